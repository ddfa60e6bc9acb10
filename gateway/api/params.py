"""Form parameters of the REST write side, read and checked with Twilio's error codes.

Every reader takes the request form (repeated keys allowed) and either returns a clean value or
raises :class:`~trunkline.gateway.api.envelope.ApiError` with Twilio's code and HTTP 400. The codes
are listed in :mod:`trunkline.gateway.api.writes`; each is documented at
https://www.twilio.com/docs/api/errors/<code>.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from multidict import MultiDictProxy

from trunkline.gateway.api.control import Target
from trunkline.gateway.api.envelope import ApiError, parse_bool
from trunkline.gateway.sip import SipParseError, parse_uri
from trunkline.gateway.switch.calls import StatusCallback

# Twilio error codes (https://www.twilio.com/docs/api/errors/<code>).
CALLS_RESOURCE = 21200
NO_TO = 21201
INVALID_URL = 21205
INVALID_TIMEOUT = 21208
INVALID_METHOD = 21209
INVALID_TO = 21211
INVALID_FROM = 21212
NO_FROM = 21213
INVALID_APPLICATION = 21218
CALL_NOT_LIVE = 21220
INVALID_STATUS_EVENT = 21626
NO_BODY = 21602
NO_MESSAGE_FROM = 21603
NO_MESSAGE_TO = 21604
INVALID_MESSAGE_CALLBACK = 21609
BODY_TOO_LONG = 21617
INVALID_PARAMETER = 20001

CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
RECORDING_EVENTS = frozenset({"in-progress", "completed", "absent"})
MAX_TIMEOUT = 600  # Twilio rings at most 600 s
MAX_TIME_LIMIT = 14400  # and a call lasts at most 4 h by default
MAX_QUEUE_SIZE = 5000  # the twilio library's documented maximum; default 1000

CLIENT = re.compile(r"client:([A-Za-z0-9_.@+-]{1,256})")
IDENTITY = re.compile(r"[A-Za-z0-9_.@+-]{1,256}")
ALPHA_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
PHONE_SEPARATORS = re.compile(r"[\s().-]")
DIGITS = re.compile(r"[0-9#*wW]{1,64}")
APPLICATION_SID = re.compile(r"AP[0-9a-f]{32}")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-f]{32}")


Form = MultiDictProxy[Any]


def param(form: Form, name: str) -> str | None:
    """A single parameter; an empty value counts as absent, as Twilio treats it."""
    value = form.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_phone_number(text: str) -> str | None:
    """``text`` as an E.164 number (``+`` then digits, separators ignored), or None."""
    compact = PHONE_SEPARATORS.sub("", text)
    if not re.fullmatch(r"\+[0-9]{2,15}", compact):
        return None
    try:
        number = phonenumbers.parse(compact, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_target(text: str) -> Target | None:
    """``To`` of a call or message: an E.164 number, a ``sip:``/``sips:`` URI or ``client:NAME``."""
    if text.lower().startswith(("sip:", "sips:")):
        try:
            uri = parse_uri(text)
        except SipParseError:
            return None
        return Target("sip", text) if uri.is_sip and uri.host else None
    client = CLIENT.fullmatch(text)
    if client:
        return Target("client", client.group(1))
    number = parse_phone_number(text)
    return Target("number", number) if number else None


def caller(text: str, *, number_only: bool) -> str | None:
    """A valid ``From``: an E.164 number, or (not calling a number) a client, SIP URI or identity."""
    number = parse_phone_number(text)
    if number:
        return number
    if number_only:
        return None
    target = parse_target(text)
    if target is not None:
        return str(target)
    return text if IDENTITY.fullmatch(text) else None


def url_param(form: Form, name: str, code: int) -> str | None:
    """An absolute http(s) URL, or None when absent; ``code`` when it is not one."""
    value = param(form, name)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ApiError(400, code, f"{name} is not a valid URL: {value}")
    return value


def method_param(form: Form, name: str, default: str = "POST") -> str:
    """``GET`` or ``POST`` (any case), ``default`` when absent; 21209 otherwise."""
    value = param(form, name)
    if value is None:
        return default
    if value.upper() not in ("GET", "POST"):
        raise ApiError(400, INVALID_METHOD, f"{name} must be GET or POST, got {value!r}")
    return value.upper()


def int_param(
    form: Form, name: str, code: int, default: int, minimum: int, maximum: int | None = None
) -> int:
    """An integer >= ``minimum`` (capped at ``maximum``), ``default`` when absent; ``code`` otherwise."""
    value = param(form, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, code, f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ApiError(400, code, f"{name} must be at least {minimum}, got {number}")
    return number if maximum is None else min(number, maximum)


def bool_param(form: Form, name: str, code: int = INVALID_PARAMETER) -> bool | None:
    """``true``/``false`` (any case), None when absent; ``code`` otherwise."""
    try:
        return parse_bool(param(form, name), name)
    except ApiError as exc:
        raise ApiError(400, code, exc.message) from None


def events_param(form: Form, name: str, allowed: frozenset[str], code: int) -> frozenset[str] | None:
    """Repeated keys (``StatusCallbackEvent=a&StatusCallbackEvent=b``) and space-separated values."""
    raw = [str(value) for value in form.getall(name, [])]
    if not raw:
        return None
    events = frozenset(word for value in raw for word in value.replace(",", " ").split())
    bad = sorted(events - allowed)
    if bad:
        raise ApiError(400, code, f"{name} has invalid event(s) {', '.join(bad)}; allowed: {sorted(allowed)}")
    return events


def sip_auth(form: Form) -> tuple[str, str] | None:
    """``SipAuthUsername`` and ``SipAuthPassword``, both or neither."""
    user, password = param(form, "SipAuthUsername"), param(form, "SipAuthPassword")
    if (user is None) != (password is None):
        raise ApiError(400, CALLS_RESOURCE, "SipAuthUsername and SipAuthPassword go together")
    return (user, password) if user is not None and password is not None else None


def to_and_from(form: Form) -> tuple[Target, str]:
    """``To`` and ``From`` of a call or participant (21201, 21211, 21213, 21212); calling a
    number needs a number as caller ID."""
    to_text = param(form, "To")
    if to_text is None:
        raise ApiError(400, NO_TO, "A 'To' phone number is required.")
    to = parse_target(to_text)
    if to is None:
        raise ApiError(400, INVALID_TO, f"The 'To' number {to_text} is not a valid phone number.")
    from_text = param(form, "From")
    if from_text is None:
        raise ApiError(400, NO_FROM, "A 'From' phone number is required.")
    from_ = caller(from_text, number_only=to.kind == "number")
    if from_ is None:
        raise ApiError(400, INVALID_FROM, f"The 'From' number {from_text} is not a valid phone number.")
    return to, from_


def status_callback_param(form: Form) -> StatusCallback | None:
    """``StatusCallback``, ``StatusCallbackMethod`` and ``StatusCallbackEvent`` (21205, 21209, 21626)."""
    url = url_param(form, "StatusCallback", INVALID_URL)
    method = method_param(form, "StatusCallbackMethod")
    events = events_param(form, "StatusCallbackEvent", CALL_EVENTS, INVALID_STATUS_EVENT)
    if url is None:
        return None
    return StatusCallback(url, method, events or frozenset({"completed"}))
