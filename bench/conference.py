"""Conference mixer cost per 20 ms tick: how many G.711 participants fit one core?

Question: what does one :meth:`ConferenceRoom.tick` (batch decode + levels + talker detection +
top-K selection + mix-minus + shared/individual encode) cost for one room of N PCMU participants,
~20 % of them talking (a tone plus noise each, the rest sending -70 dBFS line hiss), and what do
R rooms of S participants cost per tick, all rooms together? The reference, measured in the same
run, is the bare numpy arithmetic of a naive full mix-minus over the same N (sum all in int32,
``total - own`` for everyone, clip), and the naive full pipeline (batch decode + that + batch
encode of every output).

    .venv/bin/python bench/conference.py [--sizes 50,100,250,500,1000] [--rooms 50x10,100x5]
                                         [--ticks 200] [--search]
    chrt -f 10 .venv/bin/python bench/conference.py --udp [--sizes 500,50x10] [--seconds 60]

``--udp`` runs ``bench/loadgen_conference.py`` instead: the rooms in the real media engine, every
participant's RTP sent over UDP on 127.0.0.1 by a separate load-generator process, with late
ticks and loss counted over the run (the issue's 60 s test).

``--search`` keeps doubling N past the largest size until a tick takes 10 ms on average, and reports
the largest N measured under that budget (half of the 20 ms tick, leaving the rest for RTP I/O).
The "engine path" column feeds PCM rows already decoded by the engine's own batch, as
:class:`~trunkline.media.room_engine.EngineRoom` receives them.

For R rooms of S, the columns are: every room ticked on its own (``room.tick`` in a loop, what
the engine did before ``mix_many``), all rooms through :func:`~trunkline.media.room_batch.tick_rooms`
(payloads in), the engine path (:meth:`EngineRoom.mix_many`, PCM rows in, as ``MediaEngine`` calls
it), and the references: bare numpy mix-minus over all R x S participants as one array, and the same
arithmetic room by room (the floor of any per-room loop).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from trunkline.codecs.base import CodecInfo
from trunkline.codecs.g711 import ulaw_decode, ulaw_encode
from trunkline.codecs.registry import get_codec
from trunkline.media.mixer import saturate
from trunkline.media.room import ConferenceRoom, Inbound
from trunkline.media.room_batch import tick_rooms
from trunkline.media.room_engine import EngineRoom

FRAME = 160
PATTERNS = 25  # distinct inbound ticks, replayed cyclically
BUDGET_MS = 10.0


def inbound_ticks(n: int, talk_share: float, seed: int = 0) -> list[dict[str, bytes]]:
    """``PATTERNS`` ticks of PCMU payloads for ``n`` participants, ``talk_share`` of them talking."""
    rng = np.random.default_rng(seed)
    ids = [f"CA{i:05d}" for i in range(n)]
    talkers = rng.choice(n, size=max(1, round(n * talk_share)), replace=False)
    t = np.arange(PATTERNS * FRAME) / 8000.0
    pcm = rng.normal(0, 10, (n, PATTERNS * FRAME))  # line hiss, about -70 dBFS
    freqs = rng.uniform(200, 2000, talkers.size)[:, None]
    amps = rng.uniform(1000, 8000, talkers.size)[:, None]
    pcm[talkers] = amps * np.sin(2 * np.pi * freqs * t) + rng.normal(0, 300, (talkers.size, t.size))
    codes = ulaw_encode(pcm.clip(-32767, 32767).astype(np.int16)).reshape(n, PATTERNS, FRAME)
    return [{pid: codes[i, k].tobytes() for i, pid in enumerate(ids)} for k in range(PATTERNS)]


def make_room(n: int, top_k: int | None, prefix: str = "") -> ConferenceRoom:
    room = ConferenceRoom(f"bench{prefix}", top_k=top_k)
    for i in range(n):
        room.join(f"{prefix}CA{i:05d}", "PCMU/8000", beep=False)
    return room


def time_ticks(step: Callable[[int], object], ticks: int) -> tuple[float, float, float]:
    """Mean, median and p99 of one call in ms (after a warm-up)."""
    for k in range(10):
        step(k)
    samples = []
    for k in range(ticks):
        start = time.perf_counter()
        step(k)
        samples.append((time.perf_counter() - start) * 1000.0)
    samples.sort()
    return statistics.fmean(samples), samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]


def bench_room(n: int, top_k: int | None, ticks: int, pcm_in: bool = False) -> tuple[float, float, float]:
    """``pcm_in``: inputs already decoded (rows of one array), as the media engine hands them."""
    room = make_room(n, top_k)
    inputs: list[dict[str, Inbound]] = [dict(tick) for tick in inbound_ticks(n, 0.2)]
    if pcm_in:
        decoded: list[dict[str, Inbound]] = []
        for tick in inputs:
            blob = b"".join(v for v in tick.values() if isinstance(v, bytes))
            rows = ulaw_decode(np.frombuffer(blob, np.uint8).reshape(n, FRAME))
            decoded.append(dict(zip(tick, rows, strict=True)))
        inputs = decoded
    return time_ticks(lambda k: room.tick(inputs[k % PATTERNS], k * 0.02), ticks)


Timing = tuple[float, float, float]


class _Stream:
    """The part of an RtpStream the engine adapter looks at."""

    def __init__(self, codec: CodecInfo) -> None:
        self.codec: CodecInfo | None = codec


def bench_rooms(rooms: int, size: int, ticks: int) -> tuple[Timing, Timing, Timing]:
    """(room by room, ``tick_rooms``, engine path ``EngineRoom.mix_many``) for ``rooms`` x ``size``."""
    by_room = [make_room(size, 8, prefix=f"R{r}-") for r in range(rooms)]
    batched = [make_room(size, 8, prefix=f"R{r}-") for r in range(rooms)]
    inputs = [
        [{f"R{r}-{pid}": v for pid, v in tick.items()} for tick in inbound_ticks(size, 0.2, seed=r)]
        for r in range(rooms)
    ]
    per_tick = [[inputs[r][k] for r in range(rooms)] for k in range(PATTERNS)]

    def one_by_one(k: int) -> None:
        for r, room in enumerate(by_room):
            room.tick(inputs[r][k % PATTERNS], k * 0.02)

    def together(k: int) -> None:
        tick_rooms(batched, per_tick[k % PATTERNS], k * 0.02)

    # The engine path: streams as keys, PCM rows decoded by the engine's one table lookup per law.
    codec = get_codec("PCMU/8000")
    adapters, streams = [], []
    for r in range(rooms):
        adapter = EngineRoom(ConferenceRoom(f"engine{r}", top_k=8))
        members = [_Stream(codec) for _ in range(size)]
        for i, s in enumerate(members):
            adapter.join(s, f"R{r}-CA{i:05d}", beep=False)
        adapters.append(adapter)
        streams.append(members)
    decoded = []
    for k in range(PATTERNS):
        blob = b"".join(b"".join(inputs[r][k].values()) for r in range(rooms))
        decoded.append(ulaw_decode(np.frombuffer(blob, np.uint8).reshape(rooms * size, FRAME)))

    def engine(k: int) -> None:
        rows = iter(decoded[k % PATTERNS])
        # What MediaEngine._mix_rooms builds: one {stream: tick_in} per room, then one call.
        feeds = [(a, {s: next(rows) for s in members}) for a, members in zip(adapters, streams, strict=True)]
        EngineRoom.mix_many(feeds, k * 0.02)

    return time_ticks(one_by_one, ticks), time_ticks(together, ticks), time_ticks(engine, ticks)


def bench_rooms_reference(rooms: int, size: int, ticks: int) -> tuple[float, float]:
    """(bare numpy mix-minus over all participants as one array, the same room by room) mean ms."""
    frames = [
        ulaw_decode(np.frombuffer(b"".join(t.values()), np.uint8).reshape(size, FRAME))
        for t in inbound_ticks(size, 0.2)
    ]
    stacked = [np.concatenate([frames[(k + r) % PATTERNS] for r in range(rooms)]) for k in range(PATTERNS)]

    def one_array(k: int) -> object:
        f = stacked[k % PATTERNS]
        return saturate(f.sum(axis=0, dtype=np.int32) - f)

    def room_by_room(k: int) -> object:
        f = stacked[k % PATTERNS]
        return [
            saturate(f[a : a + size].sum(axis=0, dtype=np.int32) - f[a : a + size])
            for a in range(0, rooms * size, size)
        ]

    return time_ticks(one_array, ticks)[0], time_ticks(room_by_room, ticks)[0]


def bench_reference(n: int, ticks: int) -> tuple[float, float]:
    """(bare arithmetic, naive decode + arithmetic + encode) mean ms for N participants."""
    inputs = inbound_ticks(n, 0.2)
    codes = [np.frombuffer(b"".join(tick.values()), np.uint8).reshape(n, FRAME) for tick in inputs]
    frames = [ulaw_decode(c) for c in codes]

    def arithmetic(k: int) -> object:
        f = frames[k % PATTERNS]
        total = f.sum(axis=0, dtype=np.int32)
        return saturate(total - f)

    def pipeline(k: int) -> object:
        f = ulaw_decode(codes[k % PATTERNS])
        total = f.sum(axis=0, dtype=np.int32)
        return [row.tobytes() for row in ulaw_encode(saturate(total - f))]

    return time_ticks(arithmetic, ticks)[0], time_ticks(pipeline, ticks)[0]


def main() -> None:
    if "--udp" in sys.argv[1:]:
        # The same question over real UDP: the media engine fed by a load-generator process.
        import os

        sys.argv.remove("--udp")
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import loadgen_conference

        loadgen_conference.main()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,100,250,500,1000")
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--rooms", default="50x10", help="ROOMSxSIZE cases, comma-separated ('' for none)")
    parser.add_argument("--search", action="store_true", help="double N until a tick exceeds 10 ms")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    cases = [tuple(int(v) for v in case.split("x")) for case in args.rooms.split(",") if case]
    print(f"Command: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    if sizes:
        single_rooms(sizes, args.ticks, args.search)
    if cases:
        many_rooms(cases, args.ticks)


def single_rooms(sizes: list[int], ticks: int, search: bool) -> None:
    print("\nOne room of N PCMU participants, 20 % talking, per 20 ms tick (ms, one core)\n")
    print(
        "| N | room.tick top-8 mean | p50 | p99 | all talkers summed (top_k=None) mean "
        "| engine path (PCM in) mean | reference: bare numpy mix-minus | reference: naive decode+mix+encode |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    fits = 0
    n_values = list(sizes)
    i = 0
    while i < len(n_values):
        n = n_values[i]
        mean, p50, p99 = bench_room(n, 8, ticks)
        full = bench_room(n, None, ticks)[0]
        pcm_in = bench_room(n, 8, ticks, pcm_in=True)[0]
        arith, naive = bench_reference(n, ticks)
        cells = (mean, p50, p99, full, pcm_in, arith, naive)
        print(f"| {n} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
        if mean < BUDGET_MS:
            fits = max(fits, n)
        if search and i == len(n_values) - 1 and mean < BUDGET_MS and n < 256000:
            n_values.append(n * 2)
        i += 1
    print(f"\nLargest single room measured with a mean tick under {BUDGET_MS:.0f} ms: N = {fits}")


def many_rooms(cases: list[tuple[int, ...]], ticks: int) -> None:
    print("\nR rooms of S PCMU participants, 20 % talking, all rooms per 20 ms tick (ms, one core)\n")
    print(
        "| R x S | room by room (room.tick each) mean | p99 | tick_rooms mean | p50 | p99 "
        "| engine path (EngineRoom.mix_many) mean | p99 | reference: bare numpy, one array "
        "| reference: bare numpy, room by room |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rooms, size in cases:
        alone, together, engine = bench_rooms(rooms, size, ticks)
        one_array, per_room = bench_rooms_reference(rooms, size, ticks)
        cells = (alone[0], alone[2], *together, engine[0], engine[2], one_array, per_room)
        print(f"| {rooms} x {size} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")


if __name__ == "__main__":
    main()
