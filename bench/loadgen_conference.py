"""Conference rooms in the real media engine, fed over UDP (127.0.0.1) by a load-generator process.

Question: with RTP I/O, jitter buffers and the engine's own batch decode/encode included, what
does a conference of N PCMU participants cost the engine per 20 ms tick, does it keep time (late
and missed ticks) and does it lose packets? The references, measured in the same run, are the
same N streams going through the engine without a room (they hear silence) and the bare numpy
mix-minus arithmetic for N (``bench/conference.py``).

The engine runs in this process on uvloop, pinned to the idler core; the generator (its own
process, pinned to the other core) plays N phones from one UDP socket: every 20 ms one RTP packet
per participant, spread over 4 phases of the period, ~20 % of them talking (a tone per talker),
the rest sending -70 dBFS hiss. It drains what comes back and checks each engine stream's
sequence numbers, so outbound loss is exact; inbound loss is the engine's RFC 3550 count
(expected - received) plus packets its jitter buffers received too late to play.

A size is ``N`` (one room) or ``RxS`` (R rooms of S participants)::

    .venv/bin/python bench/loadgen_conference.py [--sizes 100,250,500,50x10] [--seconds 3]
        [--no-reference] [--inband-dtmf] [--profile FILE]

``--inband-dtmf`` negotiates no telephone-event, so every participant also runs the in-band DTMF
detector (as the engine does for such phones); by default telephone-event/8000 is negotiated.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import multiprocessing as mp
import random
import select
import socket
import statistics
import struct
import sys
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import uvloop
from conference import bench_reference  # type: ignore[import-not-found]
from loadgen_rtp import pick_cpus, pin  # type: ignore[import-not-found]

from trunkline.codecs.g711 import ulaw_encode
from trunkline.gateway.config import RtpConfig
from trunkline.gateway.sip.sdp import PCMU, NegotiatedMedia
from trunkline.gateway.sip.sdp_syntax import RtpFormat
from trunkline.media.engine import MediaEngine
from trunkline.media.room import ConferenceRoom
from trunkline.media.room_engine import EngineRoom
from trunkline.media.stream import RtpStream

FRAME = 160
INTERVAL = 0.020
RING = 50  # distinct frames per phone, replayed
SLOTS = 4  # phones are spread over 4 phases of the 20 ms period, like unsynchronised phones
WARMUP = 0.5
TELEPHONE_EVENT = RtpFormat(101, "telephone-event", 8000, fmtp={"0-16": ""})
_SEQ = struct.Struct("!H")
GC: GcPauses


def _payload_rings(n: int, seed: int = 0) -> list[list[bytes]]:
    rng = np.random.default_rng(seed)
    t = np.arange(RING * FRAME) / 8000.0
    rings = []
    talkers = set(rng.choice(n, size=max(1, n // 5), replace=False).tolist())
    for i in range(n):
        if i in talkers:
            pcm = rng.uniform(1000, 8000) * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
        else:
            pcm = rng.normal(0, 10, t.size)
        codes = ulaw_encode(pcm.clip(-32767, 32767).astype(np.int16)).reshape(RING, FRAME)
        rings.append([row.tobytes() for row in codes])
    return rings


def udp_drops(ports: set[int]) -> int:
    """Datagrams the kernel dropped on full receive queues of the 127.0.0.1 sockets bound to ``ports``."""
    total = 0
    with open("/proc/net/udp") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                total += int(fields[-1])
    return total


def _run_load(sock: socket.socket, ports: list[int], seconds: float) -> dict[str, float]:
    """Send for ``WARMUP + seconds``; count replies of the measured window by source port."""
    rings = _payload_rings(len(ports))
    heads = [bytearray(struct.pack("!BBHII", 0x80, 0, 0, 0, 0x20000000 + i)) for i in range(len(ports))]
    addrs = [("127.0.0.1", p) for p in ports]
    # Per engine stream (source port): received count, first and last extended sequence number.
    got: dict[int, list[int]] = {}
    own_port = {sock.getsockname()[1]}
    sent = overruns = 0
    cpu0 = time.process_time()
    start = time.monotonic() + 0.05
    measure_from = start + WARMUP
    end = measure_from + seconds
    rx = bytearray(2048)
    recv = sock.recvfrom_into
    unpack_seq = _SEQ.unpack_from

    def drain(counting: bool) -> None:
        while True:
            try:
                _, (_, port) = recv(rx)
            except BlockingIOError:
                return
            if not counting:
                continue
            (seq,) = unpack_seq(rx, 2)
            entry = got.get(port)
            if entry is None:
                got[port] = [1, seq, seq]
                continue
            entry[0] += 1
            last = entry[2]
            d = ((seq - last + 0x8000) & 0xFFFF) - 0x8000  # extended, wrap-aware
            if d > 0:
                entry[2] = last + d

    tick = 0
    drops0 = -1
    while True:
        now = time.monotonic()
        deadline = start + tick * INTERVAL / SLOTS
        if now < deadline:
            select.select([sock], [], [], deadline - now)
        else:
            if now >= end:
                break
            if now - deadline > INTERVAL:
                overruns += 1
            seq = tick // SLOTS
            counted = now >= measure_from
            if counted and drops0 < 0:
                drops0 = udp_drops(own_port)
            for i in range(tick % SLOTS, len(ports), SLOTS):
                struct.pack_into("!HI", heads[i], 2, seq & 0xFFFF, (seq * FRAME) & 0xFFFFFFFF)
                try:
                    sock.sendto(bytes(heads[i]) + rings[i][seq % RING], addrs[i])
                    sent += counted
                except BlockingIOError:
                    pass
            tick += 1
        drain(now >= measure_from)
    wall = time.monotonic() - start
    received = sum(e[0] for e in got.values())
    expected = sum(e[2] - e[1] + 1 for e in got.values())
    return {
        "gen_sent": sent,
        "out_received": received,
        "out_expected": expected,
        "out_silent_streams": len(ports) - len(got),
        "gen_drops": udp_drops(own_port) - max(0, drops0),
        "gen_overruns": overruns,
        "gen_busy": (time.process_time() - cpu0) / wall,
    }


def generator(conn: Connection, cpu: int | None) -> None:
    """Generator process: reports its port, then runs ``(ports, seconds)`` requests."""
    pin(cpu)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    conn.send(sock.getsockname()[1])
    while (msg := conn.recv()) is not None:
        ports, seconds = msg
        while True:  # leftovers of the previous case
            try:
                sock.recv(2048)
            except BlockingIOError:
                break
        conn.send(_run_load(sock, ports, seconds))


class TimedEngine(MediaEngine):
    """The engine with every tick's wall and CPU time recorded while ``samples`` is not None."""

    samples: list[float] | None = None
    cpu_samples: list[float] = []

    def process_tick(self, now: float) -> None:
        samples = self.samples
        if samples is None:
            super().process_tick(now)
            return
        t, c = time.perf_counter(), time.thread_time()
        super().process_tick(now)
        samples.append(time.perf_counter() - t)
        self.cpu_samples.append(time.thread_time() - c)


class GcPauses:
    """Durations of the garbage collector's passes (``gc.callbacks``) while recording."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._start)


class TimedRoom:
    """A ``MediaRoom`` wrapper recording how long mixing takes (all rooms of a tick together when
    the engine mixes them in one :meth:`EngineRoom.mix_many` call, as it does for small rooms)."""

    def __init__(self, room: EngineRoom, samples: list[float]) -> None:
        self.room = room
        self.samples = samples

    def mix(self, inputs: Mapping[Any, Any], now: float) -> Mapping[Any, Any]:
        t = time.perf_counter()
        out = self.room.mix(inputs, now)
        self.samples.append(time.perf_counter() - t)
        return out

    @staticmethod
    def mix_many(rooms: list[tuple[TimedRoom, Mapping[Any, Any]]], now: float) -> list[Mapping[Any, Any]]:
        t = time.perf_counter()
        out = EngineRoom.mix_many([(timed.room, inputs) for timed, inputs in rooms], now)
        if rooms:
            rooms[0][0].samples.append(time.perf_counter() - t)
        return list(out)


def _negotiated(remote_port: int, telephone_event: bool) -> NegotiatedMedia:
    return NegotiatedMedia(
        remote_address="127.0.0.1",
        remote_port=remote_port,
        remote_rtcp_address="127.0.0.1",
        remote_rtcp_port=remote_port + 1,
        codec=PCMU,
        telephone_event=TELEPHONE_EVENT if telephone_event else None,
        ptime=20,
        direction="sendrecv",
        on_hold=False,
        local_port=0,
    )


def _rx_counters(streams: list[RtpStream]) -> tuple[int, int, int]:
    expected = received = late = 0
    for s in streams:
        stats = s.rx_stats
        if stats is not None:
            expected += stats.expected
            received += stats.received
        late += s.jitter.late
    return expected, received, late


async def run_case(
    rooms: int,
    size: int,
    seconds: float,
    with_room: bool,
    gen: Connection,
    gen_port: int,
    telephone_event: bool,
    profile: cProfile.Profile | None = None,
    freeze: bool = True,
) -> dict[str, float]:
    n = rooms * size
    base = random.randrange(20000, 50000, 2)
    engine = TimedEngine(RtpConfig("127.0.0.1", base, base + 4 * n + 100))
    await engine.start()
    streams: list[RtpStream] = []
    mix_samples: list[float] = []
    try:
        for _ in range(n):
            stream = await engine.open_stream()
            stream.configure(_negotiated(gen_port, telephone_event))
            streams.append(stream)
        if with_room:
            for r in range(rooms):
                adapter = EngineRoom(ConferenceRoom(f"load{r}", top_k=8))
                timed = TimedRoom(adapter, mix_samples)
                for i, s in enumerate(streams[r * size : (r + 1) * size]):
                    adapter.join(s, f"CA{r:03d}{i:05d}", beep=False)
                    engine.join_room(s, timed)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        if freeze:
            gc.collect()
            gc.freeze()  # a server's start-up objects leave the collector's scans (gc.freeze docs)
        await asyncio.sleep(0.2)
        gen.send(([s.local_port for s in streams], seconds))
        await asyncio.sleep(0.05 + WARMUP)
        ports = {s.local_port for s in streams}
        rx0 = _rx_counters(streams)
        drops0 = udp_drops(ports)
        ticks0, late0, missed0 = engine.ticks, engine.late_ticks, engine.missed_ticks
        cpu0 = time.process_time()
        sent0 = sum(s.stats.packets_sent for s in streams)
        engine.max_lateness = 0.0
        engine.samples = []
        engine.cpu_samples = []
        GC.pauses.clear()
        mix_samples.clear()
        if profile is not None:
            profile.enable()
        gen_result = await loop.run_in_executor(None, gen.recv)
        if profile is not None:
            profile.disable()
        cpu = time.process_time() - cpu0
        samples = engine.samples
        engine.samples = None
        rx1 = _rx_counters(streams)
        drops1 = udp_drops(ports)
        ticks = engine.ticks - ticks0
        tick_ms = sorted(v * 1000.0 for v in samples)
        gc_ms = max(GC.pauses, default=0.0) * 1000.0
        tick_cpu = statistics.fmean(engine.cpu_samples) * 1000.0 if engine.cpu_samples else 0.0
        mix_ms = sorted(v * 1000.0 for v in mix_samples)
        expected, received, late = (b - a for a, b in zip(rx0, rx1, strict=True))
        return {
            "cpu_ms": cpu / max(1, ticks) * 1000.0,
            "tick_mean": statistics.fmean(tick_ms) if tick_ms else 0.0,
            "tick_p99": tick_ms[int(len(tick_ms) * 0.99)] if tick_ms else 0.0,
            "tick_cpu": tick_cpu,
            "gc": gc_ms,
            "mix_mean": sum(mix_ms) / len(tick_ms) if tick_ms else 0.0,  # all rooms' mixing per tick
            "late": engine.late_ticks - late0,
            "missed": engine.missed_ticks - missed0,
            "max_late_ms": engine.max_lateness * 1000.0,
            "ticks": ticks,
            "in_expected": expected,
            "in_lost": expected - received + late,
            "engine_sent": sum(s.stats.packets_sent for s in streams) - sent0,
            "send_drops": sum(s.stats.send_drops for s in streams),
            "engine_socket_drops": drops1 - drops0,
            **gen_result,
        }
    finally:
        await engine.stop()
        gc.unfreeze()


def _loss(lost: float, expected: float) -> str:
    return f"{lost:.0f} ({lost / expected:.2%})" if expected else "n/a"


async def amain(args: argparse.Namespace) -> None:
    server_cpu, gen_cpu = pick_cpus()
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=generator, args=(child, gen_cpu), daemon=True)
    proc.start()
    gen_port = parent.recv()
    pin(server_cpu)
    te = not args.inband_dtmf
    profile = cProfile.Profile() if args.profile else None
    print(f"Command: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}  ")
    print(
        f"Engine on CPU {server_cpu} (uvloop), generator on CPU {gen_cpu}; {args.seconds:g} s measured per "
        f"case after {WARMUP:g} s warm-up; PCMU, ~20 % talking, "
        f"{'telephone-event negotiated' if te else 'no telephone-event (in-band DTMF detection on)'}; "
        f"gc.freeze() after set-up: {'yes' if args.freeze else 'no'}\n"
    )
    print(
        "| case | engine CPU ms/tick (incl. socket I/O) | process_tick CPU ms "
        "| process_tick wall mean / p99 ms "
        "| of which room.mix mean | bare numpy mix-minus, same N | late / missed ticks (max late ms) "
        "| longest GC pass ms | inbound loss+late (engine socket drops) "
        "| outbound loss (of which dropped at the generator's socket) | generator busy / overruns |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    try:
        for spec in args.sizes.split(","):
            rooms, size = (int(x) for x in spec.split("x")) if "x" in spec else (1, int(spec))
            n = rooms * size
            cases = [(False, "no room (reference)"), (True, "room")] if args.reference else [(True, "room")]
            arith = bench_reference(size, 200)[0] * rooms
            for with_room, label in cases:
                r = await run_case(
                    rooms,
                    size,
                    args.seconds,
                    with_room,
                    parent,
                    gen_port,
                    te,
                    profile if with_room else None,
                    args.freeze,
                )
                name = f"{rooms} x {size}" if rooms > 1 else f"N = {n}"
                out_lost = r["out_expected"] - r["out_received"]
                silent = int(r["out_silent_streams"])
                print(
                    f"| {name}, {label} | {r['cpu_ms']:.2f} | {r['tick_cpu']:.2f} "
                    f"| {r['tick_mean']:.2f} / {r['tick_p99']:.2f} | {r['mix_mean']:.2f} | {arith:.2f} "
                    f"| {r['late']:.0f} / {r['missed']:.0f} ({r['max_late_ms']:.1f}) | {r['gc']:.1f} "
                    f"| {_loss(r['in_lost'], r['in_expected'])} ({r['engine_socket_drops']:.0f}) "
                    f"| {_loss(out_lost, r['out_expected'])} ({r['gen_drops']:.0f})"
                    f"{f', {silent} streams silent' if silent else ''} "
                    f"| {r['gen_busy']:.0%} / {r['gen_overruns']:.0f} |",
                    flush=True,
                )
    finally:
        parent.send(None)
        proc.join(5)
    if profile is not None:
        profile.dump_stats(args.profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,250,500,50x10")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--no-reference", dest="reference", action="store_false", help="no no-room case")
    parser.add_argument("--inband-dtmf", action="store_true", help="negotiate no telephone-event")
    parser.add_argument("--no-gc-freeze", dest="freeze", action="store_false", help="leave gc.freeze() out")
    parser.add_argument("--profile", help="cProfile the engine during the room cases into this file")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 60.0)
    global GC
    GC = GcPauses()
    uvloop.install()
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
