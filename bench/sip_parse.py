"""How fast does Trunkline parse and re-serialize a realistic INVITE?

Measures parse+serialize throughput (messages per second of CPU time on one core, garbage
collector enabled) of an INVITE with 12 headers and an SDP body, for
``trunkline.gateway.sip.parse_message`` and, in the same run, for the ``sippy`` package's
parser (``sippy.SipRequest.SipRequest(str)`` then ``str()``), and prints a markdown table
with the ratio.  Parse-only figures are printed too.  CPU time (``time.process_time``) is
used so that other processes on a shared machine do not skew the comparison.

    .venv/bin/python bench/sip_parse.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

from trunkline.gateway.sip import parse_message

_SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: Trunkline-bench/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(_SDP)).encode() + b"\r\n"
    b"\r\n" + _SDP
)


def _trunkline(data: bytes) -> None:
    parse_message(data).serialize()


def _trunkline_parse(data: bytes) -> None:
    parse_message(data)


def _sippy_runners() -> tuple[Callable[[bytes], None], Callable[[bytes], None]] | None:
    try:
        from sippy.SipRequest import SipRequest  # type: ignore[import-untyped]
    except ImportError:
        return None

    def run(data: bytes) -> None:
        # sippy works on str, as its transaction manager does after data.decode()
        request = SipRequest(data.decode())
        str(request).encode()

    def run_parse(data: bytes) -> None:
        SipRequest(data.decode())

    return run, run_parse


def measure(func: Callable[[bytes], None], data: bytes, seconds: float) -> float:
    """Return calls per second of ``func(data)`` over roughly ``seconds`` (best of 3)."""
    for _ in range(200):
        func(data)
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.process_time()
        deadline = start + seconds / 3
        while True:
            for _ in range(500):
                func(data)
            count += 500
            now = time.process_time()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per parser (default 3)")
    args = parser.parse_args()
    if parse_message(INVITE).serialize() != INVITE:
        raise SystemExit("round trip changed the message")
    ours = measure(_trunkline, INVITE, args.seconds)
    ours_parse = measure(_trunkline_parse, INVITE, args.seconds)
    sippy = _sippy_runners()
    print(f"INVITE with SDP: {len(INVITE)} bytes, Python {platform.python_version()}, one core (CPU time)\n")
    print("| parser | parse+serialize msg/s | parse only msg/s | parse+serialize vs trunkline |")
    print("|---|---:|---:|---:|")
    print(f"| trunkline.gateway.sip | {ours:,.0f} | {ours_parse:,.0f} | 1.00 |")
    if sippy is not None:
        theirs = measure(sippy[0], INVITE, args.seconds)
        theirs_parse = measure(sippy[1], INVITE, args.seconds)
        print(f"| sippy SipRequest | {theirs:,.0f} | {theirs_parse:,.0f} | {theirs / ours:.2f} |")
        print(f"\ntrunkline / sippy (parse+serialize) = {ours / theirs:.2f}x")
    else:
        print("| sippy | not installed | - | - |")


if __name__ == "__main__":
    main()
