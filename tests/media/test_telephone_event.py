"""Tests for trunkline.media.telephone_event (RFC 4733)."""

from __future__ import annotations

import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.media.test_rtp import read_pcap_udp
from trunkline.media.rtp import RtpPacket
from trunkline.media.telephone_event import (
    DtmfEvent,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
)

SIPP_PCAPS = Path("/usr/share/sip-tester")


def test_payload_round_trip() -> None:
    e = TelephoneEvent(event=11, end=True, volume=63, duration=0xFFFF)
    data = e.serialize()
    assert data == bytes([11, 0x80 | 63, 0xFF, 0xFF])
    assert TelephoneEvent.parse(data) == e
    assert e.digit == "#"
    # The R bit is ignored on receipt (RFC 4733 section 2.3).
    assert TelephoneEvent.parse(bytes([5, 0x40 | 10, 0, 160])) == TelephoneEvent(5, False, 10, 160)
    assert TelephoneEvent(16).digit is None


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (TelephoneEvent(256), "telephone-event code 256 is out of range 0-255"),
        (TelephoneEvent(1, volume=64), "telephone-event volume 64 is out of range 0-63"),
        (TelephoneEvent(1, duration=70000), "telephone-event duration 70000 is out of range 0-65535"),
    ],
)
def test_payload_serialize_errors(event: TelephoneEvent, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        event.serialize()
    assert str(excinfo.value) == message


def test_payload_truncated() -> None:
    with pytest.raises(ValueError) as excinfo:
        TelephoneEvent.parse(b"\x01\x0a\x00")
    assert str(excinfo.value) == "telephone-event payload is truncated: 3 bytes, need 4"


def test_sender_packet_sequence() -> None:
    sender = DtmfSender(0x1234, payload_type=101, interval_ms=50, sequence_number=65534)
    out = sender.packets("5", start_timestamp=2**32 - 100, duration_ms=160)
    times = [t for t, _ in out]
    packets = [p for _, p in out]
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    # 160 ms = 1280 samples: updates at 400, 800, 1200, then the end (1280) three times.
    assert [e.duration for e in events] == [400, 800, 1200, 1280, 1280, 1280]
    assert [e.end for e in events] == [False, False, False, True, True, True]
    assert {e.event for e in events} == {5}
    assert times == pytest.approx([0.0, 0.05, 0.10, 0.15, 0.20, 0.25])
    assert [p.marker for p in packets] == [True, False, False, False, False, False]
    assert {p.timestamp for p in packets} == {2**32 - 100}
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1, 2, 3]
    assert {p.payload_type for p in packets} == {101}
    assert sender.sequence_number == 4


def test_sender_rejects_unknown_digit() -> None:
    with pytest.raises(ValueError, match="DTMF digit 'w' is not one of"):
        DtmfSender(1).packets("w", start_timestamp=0)


def test_sender_splits_long_event() -> None:
    sender = DtmfSender(1, interval_ms=50)
    out = sender.packets("*", start_timestamp=1000, duration_ms=10_000)  # 80000 samples
    packets = [p for _, p in out]
    stamps = sorted({p.timestamp for p in packets})
    assert stamps == [1000, 1000 + 0xFFFF]
    first_segment = [TelephoneEvent.parse(p.payload) for p in packets if p.timestamp == 1000]
    assert first_segment[-1].duration == 0xFFFF and not first_segment[-1].end
    assert [e.duration for e in first_segment].count(0xFFFF) == 3  # sent three times (2.5.1.4)
    last = TelephoneEvent.parse(packets[-1].payload)
    assert last.end and last.duration == 80000 - 0xFFFF
    assert sum(p.marker for p in packets) == 1


def feed_all(receiver: DtmfReceiver, timed: list[tuple[float, RtpPacket]]) -> list[DtmfEvent]:
    events: list[DtmfEvent] = []
    for now, p in timed:
        events += receiver.feed(p, now)
    return events


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_sender_to_receiver(digit: str) -> None:
    sender = DtmfSender(9, interval_ms=20)
    out = sender.packets(digit, start_timestamp=4000, duration_ms=120)
    receiver = DtmfReceiver()
    assert feed_all(receiver, [(10.0 + t, p) for t, p in out]) == [DtmfEvent(digit, 120, 4000, True)]
    assert receiver.next_deadline() is None


def test_receiver_ignores_other_payload_types() -> None:
    receiver = DtmfReceiver(payload_type=101)
    assert receiver.feed(RtpPacket(0, 1, 2, 3, b"\xff" * 160), 0.0) == []
    assert receiver.next_deadline() is None


def test_receiver_lost_end_packets_timeout() -> None:
    sender = DtmfSender(9, interval_ms=50)
    out = sender.packets("7", start_timestamp=0, duration_ms=200)
    receiver = DtmfReceiver(end_timeout=0.3)
    without_end = [(t, p) for t, p in out if not TelephoneEvent.parse(p.payload).end]
    assert feed_all(receiver, without_end) == []
    last_seen = without_end[-1][0]
    assert receiver.next_deadline() == pytest.approx(last_seen + 0.3)
    assert receiver.handle_timer(last_seen + 0.29) == []
    assert receiver.handle_timer(last_seen + 0.31) == [DtmfEvent("7", 150, 0, ended=False)]
    # A late end packet of the same event is not reported again.
    assert receiver.feed(out[-1][1], last_seen + 0.4) == []


def test_receiver_lost_end_then_next_digit() -> None:
    sender = DtmfSender(9, interval_ms=50)
    first = [(t, p) for t, p in sender.packets("1", start_timestamp=0, duration_ms=100)]
    first = [(t, p) for t, p in first if not TelephoneEvent.parse(p.payload).end]
    second = [(0.1 + t, p) for t, p in sender.packets("2", start_timestamp=1600, duration_ms=100)]
    events = feed_all(DtmfReceiver(), first + second)
    assert events == [DtmfEvent("1", 50, 0, ended=False), DtmfEvent("2", 100, 1600, ended=True)]


def test_receiver_same_digit_twice() -> None:
    sender = DtmfSender(9, interval_ms=50)
    a = sender.packets("3", start_timestamp=0, duration_ms=100)
    b = [(0.5 + t, p) for t, p in sender.packets("3", start_timestamp=4000, duration_ms=100)]
    events = feed_all(DtmfReceiver(), a + b)
    assert [e.digit for e in events] == ["3", "3"]
    assert [e.timestamp for e in events] == [0, 4000]


def test_receiver_survives_loss_reorder_and_duplicates() -> None:
    sender = DtmfSender(9, interval_ms=20)
    out = sender.packets("B", start_timestamp=800, duration_ms=100)
    # First packet (with marker) lost, two updates swapped, one update duplicated.
    timed = [out[2], out[1], out[3], out[3], *out[4:]]
    assert feed_all(DtmfReceiver(), timed) == [DtmfEvent("B", 100, 800, True)]


def test_receiver_joins_long_event_segments() -> None:
    sender = DtmfSender(1, interval_ms=50)
    out = sender.packets("9", start_timestamp=2**32 - 500, duration_ms=10_000)
    assert feed_all(DtmfReceiver(), out) == [DtmfEvent("9", 10_000, 2**32 - 500, True)]


@pytest.mark.parametrize("digit", [*"0123456789", "star", "pound"])
def test_receiver_on_sipp_captures(digit: str) -> None:
    records = read_pcap_udp(SIPP_PCAPS / f"dtmf_2833_{digit}.pcap")
    receiver = DtmfReceiver(payload_type=101)
    events: list[DtmfEvent] = []
    for t, _, _, payload in records:
        events += receiver.feed(RtpPacket.parse(payload), t)
    events += receiver.handle_timer(records[-1][0] + 10)
    expected = {"star": "*", "pound": "#"}.get(digit, digit)
    # 2240 samples at 8 kHz; the three end packets are reported once.
    assert [(e.digit, e.duration_ms, e.ended) for e in events] == [(expected, 280, True)]


# -- end to end against SIPp ------------------------------------------------------------------

UAC_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="trunkline rfc4733 e2e">
  <send retrans="500"><![CDATA[
INVITE sip:test@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:test@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:test@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <nop><action><exec play_pcap_audio="{pcap1}"/></action></nop>
  <pause milliseconds="300"/>
  <nop><action><exec play_pcap_audio="{pcap2}"/></action></nop>
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
BYE sip:test@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reply(request: str, status: str, sdp: str = "") -> bytes:
    headers = {}
    for line in request.split("\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    to = headers["to"] if ";tag=" in headers["to"] else headers["to"] + ";tag=trunkline1"
    lines = [
        f"SIP/2.0 {status}",
        f"Via: {headers['via']}",
        f"From: {headers['from']}",
        f"To: {to}",
        f"Call-ID: {headers['call-id']}",
        f"CSeq: {headers['cseq']}",
        "Contact: <sip:test@127.0.0.1>",
    ]
    if sdp:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(sdp)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + sdp).encode()


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")
def test_sipp_plays_rfc4733_digits(tmp_path: Path) -> None:
    """SIPp calls us and plays two RFC 4733 captures to our RTP socket; we decode '1' then '#'."""
    scenario = tmp_path / "uac.xml"
    scenario.write_text(
        UAC_SCENARIO.format(pcap1=SIPP_PCAPS / "dtmf_2833_1.pcap", pcap2=SIPP_PCAPS / "dtmf_2833_pound.pcap")
    )
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    rtp.bind(("127.0.0.1", 0))
    sip_port = sip.getsockname()[1]
    rtp_port = rtp.getsockname()[1]
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    proc = subprocess.Popen(
        [
            "sipp", f"127.0.0.1:{sip_port}", "-sf", str(scenario), "-m", "1", "-i", "127.0.0.1",
            "-p", str(_free_udp_port()), "-mp", str(_free_udp_port()), "-nostdin", "-timeout", "20s",
            "-timeout_error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )  # fmt: skip
    receiver = DtmfReceiver(payload_type=101)
    events: list[DtmfEvent] = []
    rtp_packets = 0
    deadline = time.monotonic() + 20
    try:
        done = False
        while not done and time.monotonic() < deadline:
            ready, _, _ = select.select([sip, rtp], [], [], 0.5)
            if rtp in ready:
                data, _ = rtp.recvfrom(2048)
                rtp_packets += 1
                events += receiver.feed(RtpPacket.parse(data), time.monotonic())
            if sip in ready:
                data, addr = sip.recvfrom(4096)
                text = data.decode()
                if text.startswith("INVITE"):
                    sip.sendto(_reply(text, "200 OK", sdp), addr)
                elif text.startswith("BYE"):
                    sip.sendto(_reply(text, "200 OK"), addr)
                    done = True
        assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sip.close()
        rtp.close()
    events += receiver.handle_timer(time.monotonic() + 1)
    assert rtp_packets == 20
    assert [(e.digit, e.duration_ms, e.ended) for e in events] == [("1", 280, True), ("#", 280, True)]
