"""The relay fast path's gate: it follows every change that the general path would see.

Two legs bridged with the same codec relay packets through ``RelayGate`` (``media/stream_send.py``);
these tests change the bridge's state mid-stream (NAT re-latch, re-INVITE to a new address,
in-band DTMF detection, RFC 4733 digits sent into the bridge) over real UDP on 127.0.0.1 and
check what the phones receive.
Every test runs twice: with the poller's batched I/O (io_uring reads, the numpy relay table;
skipped where the kernel has no io_uring) and with one system call per datagram (the gate's
Python fast path, ``RelayGate.on_datagram``).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator

import numpy as np
import pytest

from tests.media.rtp_phone import Phone, negotiated, tone
from tests.peers import audio
from trunkline.gateway.config import RtpConfig
from trunkline.media import uring
from trunkline.media.engine import MediaEngine
from trunkline.media.stream import RtpStream


@pytest.fixture(params=["batched", "per-datagram"])
async def engine(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MediaEngine]:
    """A started engine whose poller reads in batches (io_uring) or one datagram per system call."""
    batched = request.param == "batched"
    if batched and not uring.available():
        pytest.skip("io_uring is not available here")
    monkeypatch.setenv("TRUNKLINE_IO_URING", "1" if batched else "0")
    base = random.randrange(30000, 60000, 2000)
    eng = MediaEngine(RtpConfig("127.0.0.1", base, base + 1999))
    await eng.start()
    assert eng.poller.ring is batched
    yield eng
    await eng.stop()


async def _bridge(engine: MediaEngine, p1: Phone, p2: Phone) -> tuple[RtpStream, RtpStream]:
    a, b = await engine.open_stream(), await engine.open_stream()
    a.configure(negotiated(p1.port))
    b.configure(negotiated(p2.port))
    engine.bridge(a, b)
    return a, b


def _dest(stream: RtpStream) -> tuple[str, int]:
    return (stream.local_address, stream.local_port)


async def test_gate_opens_after_the_first_packet_and_follows_a_nat_rebinding(engine: MediaEngine) -> None:
    loop = asyncio.get_running_loop()
    p1, moved, p2 = Phone(loop, 0), Phone(loop, 0), Phone(loop, 0)
    a, b = await _bridge(engine, p1, p2)
    first = p1.audio_packets(tone(1000, 0.3))
    await p1.send_paced(first, _dest(a))
    await asyncio.sleep(0.05)
    assert a.relay_gate is not None and a.relay_gate.source == ("127.0.0.1", p1.port)
    # The phone's NAT binding changes: same SSRC and sequence, new source port.
    moved.ssrc, moved.seq, moved.ts = p1.ssrc, p1.seq, p1.ts
    second = moved.audio_packets(tone(600, 0.3))
    await moved.send_paced(second, _dest(a))
    await asyncio.sleep(0.05)
    assert a.remote == ("127.0.0.1", moved.port)
    assert a.relay_gate is not None and a.relay_gate.source == ("127.0.0.1", moved.port)
    got = [r.packet for r in p2.received if r.packet.payload_type == 0 and len(r.packet.payload) == 160]
    relayed = [p for p in got if p.payload in {d[12:] for d in first + second}]
    assert len(relayed) == len(first) + len(second)  # nothing lost across the re-latch
    seqs = [p.sequence for p in relayed]
    assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
    # Audio for the moved phone now goes to its new address.
    await p2.send_paced(p2.audio_packets(tone(500, 0.2)), _dest(b))
    await asyncio.sleep(0.05)
    assert len(moved.received) >= 9
    for p in (p1, moved, p2):
        p.close()


async def test_reinvite_to_a_new_address_redirects_relayed_audio(engine: MediaEngine) -> None:
    loop = asyncio.get_running_loop()
    p1, p2, p2_new = Phone(loop, 0), Phone(loop, 0), Phone(loop, 0)
    a, b = await _bridge(engine, p1, p2)
    await p1.send_paced(p1.audio_packets(tone(1000, 0.3)), _dest(a))
    await asyncio.sleep(0.05)
    before = len(p2.received)
    assert before >= 14
    b.configure(negotiated(p2_new.port))  # re-INVITE: the far end moved its media
    later = p1.audio_packets(tone(800, 0.3))
    await p1.send_paced(later, _dest(a))
    await asyncio.sleep(0.05)
    payloads = {d[12:] for d in later}
    assert sum(r.packet.payload in payloads for r in p2_new.received) == len(later)
    assert not any(r.packet.payload in payloads for r in p2.received[before:])
    for p in (p1, p2, p2_new):
        p.close()


async def test_inband_detection_on_a_relayed_leg_hears_the_digits(engine: MediaEngine) -> None:
    loop = asyncio.get_running_loop()
    p1, p2 = Phone(loop, 0), Phone(loop, 0)
    a, b = await _bridge(engine, p1, p2)
    await p1.send_paced(p1.audio_packets(tone(1000, 0.2)), _dest(a))
    assert a.relay_gate is not None
    a.set_inband_dtmf(True)  # e.g. <Dial hangupOnStar> listening for "*"
    assert a.relay_gate is None
    gap = np.zeros(800, dtype=np.int16)
    keys = np.concatenate([audio.dtmf_tone("*", 0.1), gap, audio.dtmf_tone("7", 0.1), gap])
    await p1.send_paced(p1.audio_packets(keys), _dest(a))
    await asyncio.sleep(0.1)
    heard = []
    while not a.digits.empty():
        heard.append(a.digits.get_nowait().digit)
    assert heard == ["*", "7"]
    b.sync_relay()
    assert b.stats.packets_relayed == 10 + 20  # the digits were still relayed to the other side
    p1.close()
    p2.close()


async def test_rfc4733_digits_sent_into_a_relayed_bridge_share_one_sequence_space(
    engine: MediaEngine,
) -> None:
    loop = asyncio.get_running_loop()
    p1, p2 = Phone(loop, 0), Phone(loop, 0)
    a, b = await _bridge(engine, p1, p2)
    relayed = p1.audio_packets(tone(1000, 1.2))
    sending = asyncio.ensure_future(p1.send_paced(relayed, _dest(a)))
    await asyncio.sleep(0.3)
    await b.send_dtmf("5", duration_ms=100)
    await sending
    await asyncio.sleep(0.05)
    packets = [r.packet for r in p2.received]
    kinds = ["event" if p.payload_type == 101 else "audio" for p in packets]
    assert "event" in kinds and kinds[0] == "audio" and kinds[-1] == "audio"
    first_event = kinds.index("event")
    assert "audio" in kinds[first_event:]  # relaying resumed after the digit
    seqs = [p.sequence for p in packets]
    assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
    assert a.relay_gate is not None  # steady state again
    p1.close()
    p2.close()
