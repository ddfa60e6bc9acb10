"""SIP MESSAGE (RFC 3428) for text messages: building outbound requests, reading inbound ones.

Sans-I/O: these helpers only turn text into :class:`~trunkline.gateway.sip.SipRequest` objects and
back. The user-agent core sends the request (adding the Via and User-Agent it owns) and reports the
final response; it hands inbound MESSAGE requests to :func:`read_message` and answers with the
status the messaging service returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from trunkline.gateway.sip import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipUri,
    new_call_id,
    new_tag,
)

PLAIN_TEXT = "text/plain;charset=UTF-8"

#: RFC 3428 section 8: a MESSAGE whose size may exceed the path MTU, or 1300 bytes when it is
#: unknown, must go over a congestion-controlled transport (TCP/TLS), not UDP.
UDP_SIZE_LIMIT = 1300


class MessageFormatError(Exception):
    """An inbound MESSAGE the service cannot read, with the SIP status to answer it with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """What an inbound MESSAGE carries: sender and recipient addresses and the decoded text."""

    from_: str
    to: str
    body: str
    content_type: str
    call_id: str


def address_of(uri: SipUri) -> str:
    """The Twilio-style address of a SIP URI: ``+E164`` for a number, else ``client:user``.

    A ``tel:`` URI or a user part that looks like a phone number (``+`` and digits, or
    ``user=phone``, RFC 3261 section 19.1.1) is a number; any other user is a client identity.
    """
    user = uri.user or ""
    if uri.scheme == "tel":
        return user
    digits = user.lstrip("+")
    if user.startswith("+") and digits.isdigit():
        return user
    if uri.params.get("user") == "phone" and digits.isdigit():
        return "+" + digits
    return f"client:{user}" if user else str(uri.host)


def sip_uri_for(address: str, host: str, port: int | None = None) -> SipUri:
    """The SIP URI that reaches ``address`` (``+E164`` number, ``client:NAME`` or ``sip:`` URI) at
    ``host``; numbers carry ``user=phone`` (RFC 3261 section 19.1.1)."""
    if address.startswith(("sip:", "sips:")):
        return SipUri.parse(address)
    if address.startswith("client:"):
        return SipUri("sip", address.removeprefix("client:"), None, host, port)
    params: dict[str, str | None] = {"user": "phone"} if address.startswith("+") else {}
    return SipUri("sip", address, None, host, port, params)


def build_message_request(
    from_uri: SipUri,
    to_uri: SipUri,
    body: str,
    *,
    request_uri: SipUri | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    from_display: str | None = None,
) -> SipRequest:
    """An out-of-dialog MESSAGE carrying ``body`` as ``text/plain;charset=UTF-8``.

    RFC 3428 section 4: the Request-URI is normally the recipient's address of record (the To
    URI) and the body is a MIME part whose Content-Type is mandatory; no Contact is inserted,
    since a MESSAGE never creates a dialog (section 4). Via is left to the transaction layer.
    """
    target = request_uri or to_uri
    sender = NameAddr(from_uri, from_display, {"tag": new_tag()})
    headers = Headers(
        [
            ("Max-Forwards", "70"),
            ("From", sender.serialize()),
            ("To", NameAddr(to_uri).serialize()),
            ("Call-ID", call_id or new_call_id()),
            ("CSeq", f"{cseq} MESSAGE"),
            ("Content-Type", PLAIN_TEXT),
        ]
    )
    return SipRequest("MESSAGE", target.without_headers(), headers, body.encode("utf-8"))


def needs_reliable_transport(request: SipRequest) -> bool:
    """True when the serialized request exceeds RFC 3428 section 8's 1300-byte UDP limit."""
    return len(request.serialize()) > UDP_SIZE_LIMIT


def _charset(content_type: str) -> tuple[str, str]:
    kind, *params = (part.strip() for part in content_type.split(";"))
    charset = "utf-8"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"') or charset
    return kind.lower(), charset


def read_message(request: SipRequest) -> InboundMessage:
    """Sender, recipient and text of an inbound MESSAGE.

    Raises :class:`MessageFormatError` with 405 for another method, 415 for a body that is not
    ``text/plain`` (RFC 3428 section 7: "the UAS MUST respond with 415 Unsupported Media Type"
    when it does not understand the body), or 400 for undecodable text or broken From/To.
    """
    if request.method != "MESSAGE":
        raise MessageFormatError(405, f"{request.method} is not MESSAGE")
    content_type = request.content_type or "text/plain"
    kind, charset = _charset(content_type)
    if kind != "text/plain":
        raise MessageFormatError(415, f"unsupported message body type {kind!r}")
    try:
        text = request.body.decode(charset)
    except (LookupError, UnicodeDecodeError) as exc:
        raise MessageFormatError(400, f"message body is not valid {charset}: {exc}") from None
    try:
        sender = address_of(request.from_.uri)
        recipient = address_of(request.to.uri if request.to.uri.user else request.uri)
        call_id = request.call_id
    except SipParseError as exc:
        raise MessageFormatError(400, str(exc)) from None
    return InboundMessage(sender, recipient, text, content_type, call_id)
