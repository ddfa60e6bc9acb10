"""The Twilio-compatible REST API: routes, HTTP Basic authentication and error handling.

Code written for Twilio works by changing the base URL::

    client = Client(account_sid, auth_token)
    client.api.base_url = "http://127.0.0.1:8080"

Every request under ``/2010-04-01/Accounts/{AccountSid}`` must authenticate with that account's
SID and auth token (401 with ``WWW-Authenticate`` otherwise), and one account never sees another's
resources: a request for a foreign account's path answers 404 as for a missing resource.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware

from trunkline.gateway.api.envelope import API_VERSION, ApiError, not_found
from trunkline.gateway.api.resources import ReadResources
from trunkline.gateway.api.writes import WriteControls, WriteResources, write_routes
from trunkline.gateway.store import SqliteStore

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ACCOUNT_KEY = web.RequestKey("trunkline_account_sid", str)
_AUTH_HEADERS = {"WWW-Authenticate": 'Basic realm="Twilio API"'}


def _credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _public_media(request: web.Request) -> bool:
    """Recording media is readable without credentials, as Twilio's is by default, so that an
    app can ``<Play>`` a ``RecordingUrl``; the SID is the secret. Metadata (``.json``) is not."""
    parts = request.path.split("/")
    return (
        request.method in ("GET", "HEAD")
        and len(parts) == 6
        and parts[4] == "Recordings"
        and parts[5].startswith("RE")
        and not parts[5].endswith(".json")
    )


def auth_middleware(accounts: Mapping[str, str]) -> Middleware:
    """Basic auth against ``accounts`` (SID -> auth token) for every ``/2010-04-01/`` path."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(f"/{API_VERSION}/") or _public_media(request):
            return await handler(request)
        credentials = _credentials(request)
        token = accounts.get(credentials[0]) if credentials else None
        if credentials is None or token is None or not hmac.compare_digest(token, credentials[1]):
            return ApiError(401, 20003, "Authentication Error - invalid username").response(_AUTH_HEADERS)
        path_account = request.match_info.get("account_sid")
        if path_account is not None and path_account != credentials[0]:
            return not_found(request.path).response()
        request[ACCOUNT_KEY] = credentials[0]
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except web.HTTPException:
            raise
        except Exception:
            log.exception("REST request %s %s failed", request.method, request.path)
            return ApiError(500, 20500, "Internal Server Error").response()

    return middleware


def add_api_routes(
    app: web.Application,
    store: SqliteStore,
    recordings_dir: str,
    controls: WriteControls | None = None,
) -> ReadResources:
    """Add the REST routes to ``app`` (whose middlewares must include :func:`auth_middleware`).

    ``controls`` are what the write routes (POST/DELETE) drive; without them, or for a part left
    None, those routes answer 503 (20503).
    """
    resources = ReadResources(store, recordings_dir)
    writes = WriteResources(store, controls or WriteControls())
    base = f"/{API_VERSION}/Accounts/{{account_sid}}"
    routes = [
        web.get(f"{base}/Calls.json", resources.list_calls),
        web.get(f"{base}/Calls/{{sid}}.json", resources.fetch_call),
        web.delete(f"{base}/Calls/{{sid}}.json", resources.delete_call),
        web.get(f"{base}/Calls/{{call_sid}}/Recordings.json", resources.list_recordings),
        web.get(f"{base}/Recordings.json", resources.list_recordings),
        web.get(f"{base}/Recordings/{{sid}}.json", resources.fetch_recording),
        web.delete(f"{base}/Recordings/{{sid}}.json", resources.delete_recording),
        web.get(f"{base}/Recordings/{{sid}}", resources.recording_media),
        web.get(f"{base}/Conferences.json", resources.list_conferences),
        web.get(f"{base}/Conferences/{{sid}}.json", resources.fetch_conference),
        web.get(f"{base}/Conferences/{{conference_sid}}/Recordings.json", resources.list_recordings),
        web.get(f"{base}/Conferences/{{conference_sid}}/Participants.json", resources.list_participants),
        web.get(
            f"{base}/Conferences/{{conference_sid}}/Participants/{{call_sid}}.json",
            resources.fetch_participant,
        ),
        web.get(f"{base}/Messages.json", resources.list_messages),
        web.get(f"{base}/Messages/{{sid}}.json", resources.fetch_message),
        web.delete(f"{base}/Messages/{{sid}}.json", resources.delete_message),
        web.get(f"{base}/Queues.json", resources.list_queues),
        web.get(f"{base}/Queues/{{sid}}.json", resources.fetch_queue),
        web.get(f"{base}/Notifications.json", resources.list_notifications),
        web.get(f"{base}/Notifications/{{sid}}.json", resources.fetch_notification),
        *write_routes(base, writes),
    ]
    app.add_routes(routes)
    return resources


def create_api_app(
    accounts: Mapping[str, str],
    store: SqliteStore,
    recordings_dir: str,
    controls: WriteControls | None = None,
) -> web.Application:
    """A stand-alone application serving the REST API (the server mounts the same routes)."""
    app = web.Application(middlewares=[auth_middleware(accounts)])
    add_api_routes(app, store, recordings_dir, controls)
    return app
