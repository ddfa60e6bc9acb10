"""One conference room in the real media engine, fed over UDP (127.0.0.1) by a load-generator process.

Question: with RTP I/O, jitter buffers and the engine's own batch decode/encode included, what
does a conference of N PCMU participants cost the engine per 20 ms tick, and what part of that
is the mixer? The reference, measured in the same run, is the same N streams receiving and
sending through the engine without a room (they hear silence).

The generator (its own process, pinned to the other core when there are two) plays N phones
from one UDP socket: every 20 ms one RTP packet per participant, ~20 % of them talking (a tone
per talker), the rest sending -70 dBFS hiss; it drains and counts whatever comes back.

    .venv/bin/python bench/loadgen_conference.py [--sizes 100,250,500] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import select
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection

import numpy as np

from trunkline.codecs.g711 import ulaw_encode
from trunkline.gateway.config import RtpConfig
from trunkline.gateway.sip.sdp import PCMU, NegotiatedMedia
from trunkline.media.engine import MediaEngine
from trunkline.media.room import ConferenceRoom
from trunkline.media.room_engine import EngineRoom
from trunkline.media.stream import RtpStream

FRAME = 160
INTERVAL = 0.020
RING = 50  # distinct frames per phone, replayed
SLOTS = 4  # phones are spread over 4 phases of the 20 ms period, like unsynchronised phones


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


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


def generator(conn: Connection, cpu: int | None) -> None:
    """Generator process: reports its port, then runs ``(ports, seconds)`` requests."""
    _pin(cpu)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    conn.send(sock.getsockname()[1])
    while (msg := conn.recv()) is not None:
        ports, seconds = msg
        rings = _payload_rings(len(ports))
        heads = [bytearray(struct.pack("!BBHII", 0x80, 0, 0, 0, 0x20000000 + i)) for i in range(len(ports))]
        sent = received = 0
        start = time.monotonic() + 0.05
        end = start + seconds
        tick = 0
        while True:
            now = time.monotonic()
            deadline = start + tick * INTERVAL / SLOTS
            if now < deadline:
                select.select([sock], [], [], deadline - now)
            else:
                if now >= end:
                    break
                seq = tick // SLOTS
                for i in range(tick % SLOTS, len(ports), SLOTS):
                    struct.pack_into("!HI", heads[i], 2, seq & 0xFFFF, (seq * FRAME) & 0xFFFFFFFF)
                    try:
                        sock.sendto(bytes(heads[i]) + rings[i][seq % RING], ("127.0.0.1", ports[i]))
                        sent += 1
                    except BlockingIOError:
                        pass
                tick += 1
            while True:
                try:
                    sock.recv(2048)
                    received += 1
                except BlockingIOError:
                    break
        conn.send((sent, received))


def _negotiated(remote_port: int) -> NegotiatedMedia:
    return NegotiatedMedia(
        remote_address="127.0.0.1",
        remote_port=remote_port,
        remote_rtcp_address="127.0.0.1",
        remote_rtcp_port=remote_port + 1,
        codec=PCMU,
        telephone_event=None,
        ptime=20,
        direction="sendrecv",
        on_hold=False,
        local_port=0,
    )


async def run_case(
    n: int, seconds: float, with_room: bool, gen: Connection, gen_port: int
) -> dict[str, float]:
    base = random.randrange(20000, 50000, 2)
    engine = MediaEngine(RtpConfig("127.0.0.1", base, base + 4 * n + 100))
    await engine.start()
    streams: list[RtpStream] = []
    try:
        for _ in range(n):
            stream = await engine.open_stream()
            stream.configure(_negotiated(gen_port))
            streams.append(stream)
        adapter = EngineRoom(ConferenceRoom("load", top_k=8))
        if with_room:
            for i, s in enumerate(streams):
                adapter.join(s, f"CA{i:05d}", beep=False)
                engine.join_room(s, adapter)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.2)
        ticks0, busy0, late0, missed0 = (
            engine.ticks,
            engine.busy_seconds,
            engine.late_ticks,
            engine.missed_ticks,
        )
        gen.send(([s.local_port for s in streams], seconds))
        sent, received = await loop.run_in_executor(None, gen.recv)
        ticks = engine.ticks - ticks0
        return {
            "ms_per_tick": (engine.busy_seconds - busy0) / max(1, ticks) * 1000.0,
            "late": engine.late_ticks - late0,
            "missed": engine.missed_ticks - missed0,
            "ticks": ticks,
            "sent": sent,
            "received": received,
        }
    finally:
        await engine.stop()


async def amain(sizes: list[int], seconds: float) -> None:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    two_cores = (os.cpu_count() or 1) > 1
    proc = ctx.Process(target=generator, args=(child, 1 if two_cores else None), daemon=True)
    proc.start()
    gen_port = parent.recv()
    _pin(0 if two_cores else None)
    print(f"Command: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}\n")
    print(f"One room of N PCMU participants over UDP, ~20 % talking, {seconds:g} s per case\n")
    print(
        "| N | engine ms/tick with room | of which the mixer (difference) | reference: engine ms/tick, "
        "no room | late / missed ticks (room) | packets back / sent (room) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    try:
        for n in sizes:
            ref = await run_case(n, seconds, False, parent, gen_port)
            room = await run_case(n, seconds, True, parent, gen_port)
            print(
                f"| {n} | {room['ms_per_tick']:.2f} | {room['ms_per_tick'] - ref['ms_per_tick']:.2f} "
                f"| {ref['ms_per_tick']:.2f} | {room['late']:.0f} / {room['missed']:.0f} "
                f"| {room['received']:.0f} / {room['sent']:.0f} |"
            )
    finally:
        parent.send(None)
        proc.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,250,500")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(amain([int(s) for s in args.sizes.split(",")], min(args.seconds, 30.0)))


if __name__ == "__main__":
    main()
