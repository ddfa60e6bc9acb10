"""Twilio's REST conventions: errors, dates, list envelopes and page URIs (API version 2010-04-01).

A list answer carries exactly one non-meta key (the plural resource name) beside ``page``,
``page_size``, ``first_page_uri``, ``next_page_uri``, ``previous_page_uri``, ``start``, ``end`` and
``uri``; the twilio helper library finds the records by that rule and follows ``next_page_uri``
relative to its base URL.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

API_VERSION = "2010-04-01"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class ApiError(Exception):
    """An error answered as Twilio does: ``{"code", "message", "more_info", "status"}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def response(self, headers: Mapping[str, str] | None = None) -> web.Response:
        """The JSON error response."""
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        return web.json_response(body, status=self.status, headers=headers)


def not_found(path: str) -> ApiError:
    """Twilio's 20404 for a resource that does not exist (or belongs to another account)."""
    return ApiError(404, 20404, f"The requested resource {path} was not found")


def rfc2822(moment: datetime | float | None) -> str | None:
    """A date as Twilio's JSON writes it: ``Fri, 27 Nov 2026 12:00:00 +0000``."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        # Whole seconds only: memoised, since a call's records and every call of a second share them.
        return _rfc2822_second(math.floor(moment))
    return format_datetime(moment.astimezone(UTC)).replace("-0000", "+0000")


@functools.lru_cache(maxsize=1024)
def _rfc2822_second(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, UTC)).replace("-0000", "+0000")


def account_base(account_sid: str) -> str:
    """``/2010-04-01/Accounts/{AccountSid}``."""
    return f"/{API_VERSION}/Accounts/{account_sid}"


@dataclass(frozen=True, slots=True)
class Paging:
    """Page number and size from the query (``Page``, ``PageSize``)."""

    page: int
    size: int

    @property
    def offset(self) -> int:
        """Index of the first record of the page."""
        return self.page * self.size

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Paging:
        """Read and check ``Page``/``PageSize`` (Twilio: 20 <= 1000 records a page)."""
        try:
            size = int(query.get("PageSize", DEFAULT_PAGE_SIZE))
            page = int(query.get("Page", 0))
        except ValueError:
            raise ApiError(400, 20001, "Page and PageSize must be integers") from None
        if not 1 <= size <= MAX_PAGE_SIZE or page < 0:
            raise ApiError(400, 20001, f"PageSize must be 1 to {MAX_PAGE_SIZE} and Page non-negative")
        return cls(page=page, size=size)


def list_envelope(
    key: str,
    records: Sequence[dict[str, Any]],
    *,
    path: str,
    filters: Sequence[tuple[str, str]],
    paging: Paging,
    total: int,
) -> dict[str, Any]:
    """The list answer for one page of ``records`` out of ``total`` matching ``filters``."""

    def page_uri(page: int) -> str:
        query = [*filters, ("PageSize", str(paging.size)), ("Page", str(page))]
        if page > 0:
            query.append(("PageToken", f"PA{page * paging.size}"))
        return f"{path}?{urlencode(query)}"

    has_next = paging.offset + len(records) < total
    return {
        key: list(records),
        "page": paging.page,
        "page_size": paging.size,
        "start": paging.offset,
        "end": paging.offset + max(len(records) - 1, 0),
        "uri": page_uri(paging.page),
        "first_page_uri": page_uri(0),
        "next_page_uri": page_uri(paging.page + 1) if has_next else None,
        "previous_page_uri": page_uri(paging.page - 1) if paging.page > 0 else None,
    }


def json_response(body: Mapping[str, Any], status: int = 200) -> web.Response:
    """A JSON answer with Twilio's compact encoding."""
    return web.Response(
        text=json.dumps(body, separators=(", ", ": "), ensure_ascii=False),
        status=status,
        content_type="application/json",
    )


def parse_bool(value: str | None, name: str) -> bool | None:
    """Twilio's ``true``/``false`` form values (case-insensitive); None when absent."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ApiError(400, 20001, f"{name} must be true or false, got {value!r}")
