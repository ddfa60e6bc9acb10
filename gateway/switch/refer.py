"""``<Refer>``: transfer the caller with a SIP REFER (RFC 3515) and report how it went.

Entry point, called by :meth:`SipCallChannel.refer <trunkline.gateway.switch.channel.SipCallChannel.refer>`::

    async def run_refer(channel: SipCallChannel, refer: verbs.Refer) -> ReferResult

The REFER goes in the caller's dialog with ``Refer-To`` = the nested ``<Sip>`` URI and
``Referred-By`` = our side of the dialog. A non-2xx answer fails the transfer at once with that
code. After 202 the transferee reports progress in NOTIFYs carrying ``message/sipfrag`` bodies
(RFC 3515 section 2.4.5): the first final status line (``SIP/2.0 200 OK``) decides the outcome:
``ReferCallStatus=completed`` for 2xx, ``failed`` otherwise, with ``ReferSipResponseCode`` = that
status. Without a final NOTIFY within :data:`NOTIFY_TIMEOUT` seconds (or if the caller hangs up
before one) the transfer is ``failed``. After a completed transfer our leg is hung up (the
transferee is now talking to the transfer target, RFC 5589 section 6).

The leg layer answers every in-dialog NOTIFY 200 itself; while a REFER is pending this module
also looks at them by wrapping the leg's ``on_request`` (restored afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any

from trunkline.gateway.sip.core import IncomingRequest
from trunkline.gateway.sip.dialog import DialogError
from trunkline.gateway.sip.message import SipRequest
from trunkline.gateway.sip.useragent import RequestFailed
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import CallEnded, ReferResult

if TYPE_CHECKING:
    from trunkline.gateway.switch.channel import SipCallChannel

__all__ = ["NOTIFY_TIMEOUT", "ReferError", "parse_sipfrag", "run_refer"]

log = logging.getLogger("trunkline.switch.refer")

#: How long to wait for the NOTIFY with the transfer's final status.
NOTIFY_TIMEOUT = 60.0

# RFC 3420 section 2 / RFC 3261 section 25.1: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?$")


class ReferError(ValueError):
    """A NOTIFY body that is not a ``message/sipfrag`` starting with a SIP status line."""


def parse_sipfrag(body: bytes) -> int:
    """The status code of a ``message/sipfrag`` body's first line (RFC 3420, RFC 3515 2.4.5)."""
    first = body.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace").strip()
    match = _STATUS_LINE.match(first)
    if match is None:
        raise ReferError(f"sipfrag does not start with a status line: {first!r}")
    return int(match.group(1))


def _is_refer_notify(request: SipRequest) -> bool:
    event = (request.headers.get("Event") or "").split(";", 1)[0].strip().lower()
    return event == "refer"


async def run_refer(channel: SipCallChannel, refer: v.Refer) -> ReferResult:
    """``<Refer>`` on ``channel`` (see the module docstring)."""
    if channel.is_ended:
        raise CallEnded
    leg = channel.leg
    loop = asyncio.get_running_loop()
    notifies: asyncio.Queue[SipRequest] = asyncio.Queue()
    original = leg.on_request

    def on_request(incoming: IncomingRequest, now: float) -> None:
        if incoming.request.method == "NOTIFY" and _is_refer_notify(incoming.request):
            notifies.put_nowait(incoming.request)
        original(incoming, now)

    leg.on_request = on_request  # type: ignore[method-assign]
    try:
        referred_by = leg.dialog.local.uri.serialize() if leg.dialog is not None else None
        headers = [("Refer-To", f"<{refer.target}>")]
        if referred_by:
            headers.append(("Referred-By", f"<{referred_by}>"))
        try:
            response = await leg.send_request("REFER", headers=headers)
        except RequestFailed as exc:
            return ReferResult("failed", exc.status)
        except DialogError:
            raise CallEnded from None
        if response.status_code >= 300:
            return ReferResult("failed", response.status_code)
        code = await _final_status(channel, notifies, loop.time() + NOTIFY_TIMEOUT)
    finally:
        with contextlib.suppress(AttributeError):
            del leg.on_request  # back to the class's method
    if code is not None and 200 <= code < 300:
        await channel.hangup()
        return ReferResult("completed", code)
    return ReferResult("failed", code)


async def _final_status(
    channel: SipCallChannel, notifies: asyncio.Queue[SipRequest], deadline: float
) -> int | None:
    loop = asyncio.get_running_loop()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        getter = asyncio.ensure_future(notifies.get())
        waits: set[asyncio.Future[Any]] = {getter, channel.ended}
        await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            return None
        request = getter.result()
        try:
            code = parse_sipfrag(request.body)
        except ReferError as exc:
            log.info("call %s: %s", channel.call_sid, exc)
            continue
        if code >= 200:
            return code
