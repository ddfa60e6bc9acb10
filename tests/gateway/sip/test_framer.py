"""Stream framing (RFC 3261 section 18.3) and RFC 5626 keep-alives."""

from __future__ import annotations

from pathlib import Path

import pytest

from trunkline.gateway.sip import FramingError, SipParseError, StreamFramer, parse_message

RFC4475 = Path(__file__).resolve().parents[2] / "fixtures" / "rfc4475"

MSG1 = (
    b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\n"
    b"To: <sip:b@h>\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c1\r\nContent-Length: 5\r\n\r\nhello"
)
MSG2 = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\n"
    b"To: <sip:b@h>;tag=z\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c1\r\nl: 0\r\n\r\n"
)


def test_whole_and_split_messages() -> None:
    framer = StreamFramer()
    assert framer.feed(MSG1 + MSG2) == [MSG1, MSG2]
    assert framer.buffered == 0
    stream = MSG1 + MSG2 + MSG1
    for step in (1, 3, 7, 50):
        framer = StreamFramer()
        out: list[bytes] = []
        for i in range(0, len(stream), step):
            out.extend(framer.feed(stream[i : i + step]))
        assert out == [MSG1, MSG2, MSG1]
    assert parse_message(out[0]).body == b"hello"


def test_keepalive_ping_and_pong() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.take_pings() == 1
    assert framer.take_pings() == 0
    # split ping, then a message
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n" + MSG2) == [MSG2]
    assert framer.take_pings() == 1
    # a lone CRLF (a pong) before a message is skipped, not counted
    assert framer.feed(b"\r\n" + MSG1 + b"\r\n\r\n\r\n\r\n") == [MSG1]
    assert framer.take_pings() == 2


def test_missing_content_length_is_an_error_and_sticks() -> None:
    framer = StreamFramer()
    data = MSG2.replace(b"l: 0\r\n", b"")
    with pytest.raises(FramingError, match="missing Content-Length") as info:
        framer.feed(data)
    assert info.value.status_code == 400
    assert isinstance(info.value, SipParseError)
    with pytest.raises(FramingError):
        framer.feed(MSG1)


def test_bad_content_length() -> None:
    with pytest.raises(FramingError, match="bad Content-Length"):
        StreamFramer().feed(MSG2.replace(b"l: 0", b"l: -3"))
    with pytest.raises(FramingError, match="stray CR"):
        StreamFramer().feed(b"\rINVITE")


def test_maximum_size() -> None:
    framer = StreamFramer(max_size=200)
    with pytest.raises(FramingError) as info:
        framer.feed(MSG1.replace(b"Content-Length: 5", b"Content-Length: 500"))
    assert info.value.status_code == 413
    framer = StreamFramer(max_size=100)
    with pytest.raises(FramingError, match="head exceeds 100"):
        for _ in range(20):
            framer.feed(b"X-Header: " + b"a" * 20 + b"\r\n")


def test_folded_content_length_and_torture_fixtures() -> None:
    framer = StreamFramer()
    folded = MSG1.replace(b"Content-Length: 5", b"Content-Length:\r\n 5")
    assert framer.feed(folded) == [folded]
    stream = b""
    expected = []
    for name in ("esc01", "wsinv", "longreq", "mpart01", "unreason"):
        data = (RFC4475 / f"{name}.dat").read_bytes()
        stream += data
        expected.append(data)
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(0, len(stream), 97):
        out.extend(framer.feed(stream[i : i + 97]))
    assert out == expected
    assert [len(parse_message(m).body) for m in out] == [150, 150, 150, 553, 154]
