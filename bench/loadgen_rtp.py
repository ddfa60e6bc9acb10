"""RTP load generator (its own process) and the bare UDP drain-and-echo reference server.

The generator plays the phones of N bridged calls: every 20 ms it sends one RTP packet to each
of the 2N call legs (50 packets/s per direction per leg) from two sockets ("side A" and "side
B"; the engine latches each leg onto whichever address its packets come from) and drains
whatever comes back.  For G.711 every payload carries ``(call, direction, send time)`` in its
first 16 bytes, so a relay that forwards payloads unchanged lets the generator measure loss and
one-way delay packet by packet (``time.monotonic`` is one system-wide clock, valid across
processes).  Transcoded payloads cannot carry that, so for them only packet counts are kept.

Used by ``bench/media_relay.py`` and ``bench/media_transcode.py``; run alone it measures the
reference, a bare non-blocking UDP drain-and-echo loop in a second process::

    .venv/bin/python bench/loadgen_rtp.py --calls 200 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import numpy as np

try:
    import mmsg
except ImportError:  # imported as bench.loadgen_rtp
    from bench import mmsg

FRAME = 160
INTERVAL = 0.020
_STAMP = struct.Struct("!IId")  # call index, direction (0: sent to leg A, 1: to leg B), send time
_SEQTS = struct.Struct("!HI")
_SEQ_TS_SSRC_STAMP = struct.Struct("!HII" + _STAMP.format.lstrip("!"))
BUFFER = 4 << 20
SLOTS = 20  # send phases per 20 ms period


def pin(cpu: int | None) -> None:
    """Pin the calling process to one CPU (no-op where unsupported)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def pick_cpus() -> tuple[int | None, int | None]:
    """(server CPU, generator CPU): the idler CPU (over 0.5 s of /proc/stat) serves the engine.

    The benchmark machine may be shared; the server gets the CPU with the least other load.
    """
    if (os.cpu_count() or 1) < 2 or not hasattr(os, "sched_setaffinity"):
        return None, None

    def idle() -> dict[int, tuple[int, int]]:
        out = {}
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *vals = line.split()
                    nums = [int(v) for v in vals]
                    out[int(name[3:])] = (nums[3] + nums[4], sum(nums))
        return out

    try:
        a = idle()
        time.sleep(0.5)
        b = idle()
    except OSError:
        return 0, 1
    share = {c: (b[c][0] - a[c][0]) / max(1, b[c][1] - a[c][1]) for c in b if c in a}
    ranked = sorted(share, key=lambda c: -share[c])
    return ranked[0], ranked[1]


def _udp_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


@dataclass(slots=True)
class LoadResult:
    """What one generator run measured (only packets sent after the warm-up count)."""

    calls: int
    seconds: float
    sent: int = 0
    received: int = 0  # packets that came back at all (any payload)
    stamped: int = 0  # of those, carrying one of our stamps sent in the window
    delays_ms: list[float] = field(default_factory=list)
    send_overruns: int = 0  # send slots where the generator itself fell behind by a period
    cpu_s: float = 0.0  # generator CPU time during the run
    wall_s: float = 0.0

    @property
    def busy(self) -> float:
        """Fraction of its core the generator used: near 1.0 means it, not the server, is the limit."""
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def loss(self) -> float:
        """Fraction of stamped packets that never came back (relay/echo)."""
        return 1.0 - self.stamped / self.sent if self.sent else 0.0

    def delay_percentile(self, q: float) -> float:
        return float(np.percentile(self.delays_ms, q)) if self.delays_ms else float("nan")


def _paced(
    result: LoadResult,
    socks: list[socket.socket],
    drain: Callable[[], None],
    start: float,
    measure_from: float,
    end: float,
    send_slot: Callable[[int, float, bool], None],
) -> None:
    """The generator's schedule: ``send_slot(tick, t, counted)`` every ``20 ms / SLOTS`` from
    ``start`` until ``end`` (``counted``: sent inside the measured window), draining replies in
    between, then 0.1 s more for the stragglers already in flight."""
    slot_len = INTERVAL / SLOTS
    tick = 0
    while True:
        now = time.monotonic()
        deadline = start + tick * slot_len
        if now < deadline:
            select.select(socks, [], [], deadline - now)
            drain()
            continue
        if now >= end:
            break
        if now - deadline > INTERVAL:
            result.send_overruns += 1
        # One send time per slot: its packets leave within microseconds of each other.
        t = time.monotonic()
        send_slot(tick, t, measure_from <= t < end)
        tick += 1
        drain()
    drain_until = time.monotonic() + 0.1
    while (left := drain_until - time.monotonic()) > 0:
        select.select(socks, [], [], left)
        drain()


def run_load(
    sock_a: socket.socket,
    sock_b: socket.socket,
    targets: list[tuple[int, int]],
    seconds: float,
    *,
    warmup: float = 0.5,
    payload_a: list[bytes] | None = None,
    payload_b: list[bytes] | None = None,
    pt_a: int = 0,
    pt_b: int = 0,
    step_a: int = 160,
    step_b: int = 160,
) -> LoadResult:
    """Send to every ``(leg_a_port, leg_b_port)`` on 127.0.0.1 for ``seconds`` and collect replies.

    Without ``payload_a``/``payload_b`` the payloads are stamped G.711 silence; with them
    (rings of pre-encoded frames, e.g. Opus) packets carry those instead.  Stamped loads use
    ``sendmmsg``/``recvmmsg`` where Linux has them (:func:`run_load_batched`), so that the
    generator's own interpreter cost does not limit the load it can offer.
    """
    if payload_a is None and payload_b is None and pt_a == pt_b == 0 and mmsg.available():
        return run_load_batched(sock_a, sock_b, targets, seconds, warmup=warmup)
    n = len(targets)
    legs: list[tuple[socket.socket, tuple[str, int], bytearray, int, int, int, list[bytes] | None, int]] = []
    for i, (pa, pb) in enumerate(targets):
        for direction, (sock, port, ring, pt, step) in enumerate(
            ((sock_a, pa, payload_a, pt_a, step_a), (sock_b, pb, payload_b, pt_b, step_b))
        ):
            buf = bytearray(12 + FRAME)
            buf[0] = 0x80
            buf[1] = pt
            struct.pack_into("!I", buf, 8, 0x10000000 + 2 * i + direction)
            legs.append((sock, ("127.0.0.1", port), buf, i, direction, step, ring, pt))
    seqs = [0] * len(legs)
    ssrcs = [0x10000000 + k for k in range(len(legs))]  # as packed into each buffer above
    pack_stamped = _SEQ_TS_SSRC_STAMP.pack_into
    result = LoadResult(n, seconds)
    cpu0, wall0 = time.process_time(), time.monotonic()
    delays: list[float] = []
    start = time.monotonic() + 0.05
    measure_from = start + warmup
    end = measure_from + seconds
    socks = [sock_a, sock_b]

    rx = bytearray(2048)
    recv_into = [sock.recv_into for sock in socks]
    unpack_stamp = _STAMP.unpack_from
    monotonic = time.monotonic
    min_size = 12 + _STAMP.size

    def drain() -> None:
        # Interleaved with sending, so replies are timed when they arrive, not after a burst.
        # One reused receive buffer: the generator's own per-packet cost caps the load it offers.
        received = stamped = 0
        for recv in recv_into:
            while True:
                try:
                    size = recv(rx)
                except BlockingIOError:
                    break
                received += 1
                if size >= min_size:
                    call, direction, sent_at = unpack_stamp(rx, 12)
                    if call < n and direction < 2 and measure_from <= sent_at < end:
                        stamped += 1
                        delays.append((monotonic() - sent_at) * 1000.0)
        result.received += received
        result.stamped += stamped

    # Real phones are not synchronised: spread the legs over SLOTS phases of the 20 ms period.
    slots = [list(range(j, len(legs), SLOTS)) for j in range(SLOTS)]

    def send_slot(tick: int, t: float, counted: bool) -> None:
        for k in slots[tick % SLOTS]:
            sock, addr, buf, call, direction, step, ring, _pt = legs[k]
            seq = seqs[k]
            seqs[k] = seq + 1
            if ring is None:
                # Sequence number, timestamp, SSRC (unchanged) and the stamp in one pack_into.
                pack_stamped(buf, 2, seq & 0xFFFF, (seq * step) & 0xFFFFFFFF, ssrcs[k], call, direction, t)
                data: bytes | bytearray = buf
            else:
                _SEQTS.pack_into(buf, 2, seq & 0xFFFF, (seq * step) & 0xFFFFFFFF)
                data = bytes(buf[:12]) + ring[seq % len(ring)]
            with contextlib.suppress(BlockingIOError):
                sock.sendto(data, addr)
            if counted:
                result.sent += 1

    _paced(result, socks, drain, start, measure_from, end, send_slot)
    result.delays_ms = delays
    result.cpu_s = time.process_time() - cpu0
    result.wall_s = time.monotonic() - wall0
    return result


_PACKET = np.dtype(
    [
        ("b0", "u1"),
        ("b1", "u1"),
        ("seq", ">u2"),
        ("ts", ">u4"),
        ("ssrc", ">u4"),
        ("call", ">u4"),
        ("direction", ">u4"),
        ("sent_at", ">f8"),
    ]
)  # RTP header + the stamp (_STAMP), as a numpy record over each packet's first 28 bytes


def run_load_batched(
    sock_a: socket.socket,
    sock_b: socket.socket,
    targets: list[tuple[int, int]],
    seconds: float,
    *,
    warmup: float = 0.5,
) -> LoadResult:
    """:func:`run_load` for stamped G.711 with one ``sendmmsg`` per send slot and ``recvmmsg`` reads.

    The same schedule (every leg every 20 ms, spread over ``SLOTS`` phases; SSRC ``0x10000000 +
    2 * call + direction``) and the same stamps; headers are updated with numpy for a whole slot
    at once and replies are parsed a batch at a time, so the generator's cost per packet is
    mostly the kernel's.  A reply's delay is taken when its batch is read (the generator drains
    between slots, every ``20 ms / SLOTS``).
    """
    n = len(targets)
    order = [
        (slot, direction, i)
        for slot in range(SLOTS)
        for direction in (0, 1)
        for i in range(n)
        if (2 * i + direction) % SLOTS == slot
    ]
    packets = np.zeros((len(order), 12 + FRAME), dtype=np.uint8)
    head = packets[:, : _PACKET.itemsize].view(_PACKET)[:, 0]
    head["b0"] = 0x80
    head["call"] = [i for _, _, i in order]
    head["direction"] = [d for _, d, _ in order]
    head["ssrc"] = [0x10000000 + 2 * i + d for _, d, i in order]
    batch = mmsg.MsgBatch(packets, [targets[i][d] for _, d, i in order])
    groups: list[list[tuple[socket.socket, int, int]]] = [[] for _ in range(SLOTS)]
    row = 0
    for slot in range(SLOTS):
        for direction, sock in ((0, sock_a), (1, sock_b)):
            size = sum(1 for s_, d, _ in order if s_ == slot and d == direction)
            if size:
                groups[slot].append((sock, row, row + size))
                row += size
    seq_field, ts_field, stamp_field = head["seq"], head["ts"], head["sent_at"]
    rx = mmsg.RecvBatch(1024, 64)
    rx_head = rx.buffer[:, : _PACKET.itemsize].view(_PACKET)[:, 0]
    result = LoadResult(n, seconds)
    cpu0, wall0 = time.process_time(), time.monotonic()
    delays: list[np.ndarray] = []
    start = time.monotonic() + 0.05
    measure_from = start + warmup
    end = measure_from + seconds
    socks = [sock_a, sock_b]
    monotonic = time.monotonic

    def drain() -> None:
        for sock in socks:
            while True:
                got = rx.recv(sock)
                if not got:
                    break
                arrived = monotonic()
                recs = rx_head[:got]
                sent_at = recs["sent_at"]
                ok = (
                    (recs["call"] < n) & (recs["direction"] < 2) & (sent_at >= measure_from) & (sent_at < end)
                )
                result.received += got
                result.stamped += int(ok.sum())
                delays.append((arrived - sent_at[ok]) * 1000.0)
                if got < rx.capacity:
                    break

    def send_slot(tick: int, t: float, counted: bool) -> None:
        seq = tick // SLOTS
        for sock, first, stop in groups[tick % SLOTS]:
            seq_field[first:stop] = seq & 0xFFFF
            ts_field[first:stop] = (seq * FRAME) & 0xFFFFFFFF
            stamp_field[first:stop] = t
            batch.send(sock, first, stop)
            if counted:
                result.sent += stop - first  # any left unsent (full buffer) count as lost

    _paced(result, socks, drain, start, measure_from, end, send_slot)
    result.delays_ms = np.concatenate(delays).tolist() if delays else []
    result.cpu_s = time.process_time() - cpu0
    result.wall_s = time.monotonic() - wall0
    return result


def generator_worker(conn: Connection, cpu: int | None) -> None:
    """Generator process: reports its two ports, then serves ``("run", kwargs)`` requests."""
    pin(cpu)
    sock_a, sock_b = _udp_socket(), _udp_socket()
    conn.send((sock_a.getsockname()[1], sock_b.getsockname()[1]))
    while True:
        msg = conn.recv()
        if msg is None:
            break
        _, kwargs = msg
        # Drop leftovers of a previous step.
        for sock in (sock_a, sock_b):
            while True:
                try:
                    sock.recv(2048)
                except BlockingIOError:
                    break
        conn.send(run_load(sock_a, sock_b, **kwargs))


class Generator:
    """Handle on a generator process pinned to ``cpu``."""

    def __init__(self, cpu: int | None) -> None:
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=generator_worker, args=(child, cpu), daemon=True)
        self._proc.start()
        self.port_a, self.port_b = self._conn.recv()

    def run(self, targets: list[tuple[int, int]], seconds: float, **kwargs: object) -> LoadResult:
        self._conn.send(("run", {"targets": targets, "seconds": seconds, **kwargs}))
        result: LoadResult = self._conn.recv()
        return result

    def close(self) -> None:
        self._conn.send(None)
        self._proc.join(5)


# -- the reference: a bare drain-and-echo loop ----------------------------------------------------


def echo_worker(
    conn: Connection, calls: int, cpu: int | None, use_uvloop: bool = False, batched: bool = False
) -> None:
    """Bind 2 sockets per call and echo every datagram back to its sender.

    ``batched=False`` is the classic asyncio pattern (one ``add_reader`` per socket, drained
    until ``BlockingIOError``); ``batched=True`` reads the sockets the way the media engine
    does (:class:`~trunkline.media.poller.DatagramPoller`: one epoll set behind one reader,
    one datagram per ready socket and round).  No RTP work at all: the I/O floor of a Python
    relay with either technique.
    """
    pin(cpu)
    socks = [_udp_socket() for _ in range(2 * calls)]
    ports = [s.getsockname()[1] for s in socks]
    if use_uvloop:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    def drain(sock: socket.socket) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(2048)
            except BlockingIOError:
                return
            with contextlib.suppress(BlockingIOError):
                sock.sendto(data, addr)

    if batched:
        from trunkline.media.poller import DatagramPoller

        poller = DatagramPoller(loop, ring=False)
        buf = bytearray(2048)
        view = memoryview(buf)
        for sock in socks:

            def echo_one(now: float, sock: socket.socket = sock) -> None:
                try:
                    n, addr = sock.recvfrom_into(buf)
                except OSError:
                    return
                with contextlib.suppress(BlockingIOError):
                    sock.sendto(view[:n], addr)

            poller.add(sock.fileno(), echo_one)
    else:
        for sock in socks:
            loop.add_reader(sock.fileno(), drain, sock)
    conn.send([(ports[2 * i], ports[2 * i + 1]) for i in range(calls)])
    cpu0 = time.process_time()
    stop = loop.create_future()
    loop.add_reader(conn.fileno(), lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    conn.recv()
    conn.send({"cpu_s": time.process_time() - cpu0})


def main() -> None:
    parser = argparse.ArgumentParser(description="bare UDP echo reference under the RTP load generator")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    server_cpu, gen_cpu = pick_cpus()
    gen = Generator(gen_cpu)
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=echo_worker, args=(child, args.calls, server_cpu), daemon=True)
    proc.start()
    targets = parent.recv()
    res = gen.run(targets, args.seconds)
    parent.send("stop")
    parent_stats = parent.recv()
    proc.join(5)
    gen.close()
    pps = res.stamped / args.seconds
    stats = parent_stats
    print("| calls | sent | loss | p50 ms | p99 ms | echoed pps | echo CPU | generator CPU |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.calls} | {res.sent} | {res.loss:.4%} | {res.delay_percentile(50):.2f} "
        f"| {res.delay_percentile(99):.2f} | {pps:,.0f} "
        f"| {stats['cpu_s'] / res.wall_s:.0%} | {res.busy:.0%} |"
    )


if __name__ == "__main__":
    main()
