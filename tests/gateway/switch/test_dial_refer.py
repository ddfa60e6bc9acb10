"""``<Refer>``: reading the ``message/sipfrag`` bodies of the transferee's NOTIFYs (RFC 3420, RFC 3515)."""

from __future__ import annotations

import pytest

from trunkline.gateway.switch.refer import ReferError, parse_sipfrag


def test_status_line_of_a_sipfrag() -> None:
    assert parse_sipfrag(b"SIP/2.0 100 Trying\r\n") == 100
    assert parse_sipfrag(b"SIP/2.0 200 OK") == 200
    assert parse_sipfrag(b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n") == 486
    assert parse_sipfrag(b"SIP/2.0 603 Decline\n") == 603


@pytest.mark.parametrize(
    "body",
    [b"", b"INVITE sip:a@b SIP/2.0\r\n", b"SIP/2.0 99 Too Low", b"SIP/3.0 200 OK", b"HTTP/1.1 200 OK"],
)
def test_not_a_status_line(body: bytes) -> None:
    with pytest.raises(ReferError, match="status line"):
        parse_sipfrag(body)
