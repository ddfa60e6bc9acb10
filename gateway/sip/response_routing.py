"""Where a response goes: RFC 3261 section 18.2.2 and RFC 3581 section 4.

On a stream the response goes back over the connection the request came on. On UDP it goes to the
source address and port when the top Via carries ``rport``, else to the source address (recorded
as ``received``) and the port in the Via's sent-by.
"""

from __future__ import annotations

from trunkline.gateway.sip.headers import Via

Address = tuple[str, int]


def _host(text: str) -> str:
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def response_destination(via: Via, source: Address, reliable: bool) -> tuple[Via, Address]:
    """Top Via as it goes back in the response, and where a UDP/stream response is sent.

    RFC 3261 section 18.2.1: add ``received`` when the sent-by host differs from the source
    address. RFC 3581 section 4: with ``rport``, fill in the source port and add ``received``
    even when it equals sent-by, and answer to the source IP and port.
    """
    host, port = source
    if via.has_rport:
        via = via.with_params(received=host, rport=str(port))
        return via, source
    if _host(via.host) != host:
        via = via.with_params(received=host)
    if reliable:
        return via, source
    # Section 18.2.2: unreliable transport, received present -> that address, port from sent-by.
    return via, (host, via.port or 5060)
