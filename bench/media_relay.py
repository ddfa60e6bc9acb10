"""Relayed G.711 calls per core: the media engine vs a bare UDP drain-and-echo loop.

Question: how many bridged PCMU calls (each 2 x 50 packets/s in and 2 x 50 out) can the media
engine relay on one core with < 0.1 % loss and p99 one-way delay < 10 ms, compared with a bare
non-blocking drain-and-echo loop (no RTP work) measured in the same run under the same load
generator?  Two references: ``echo``, the classic asyncio pattern (one ``add_reader`` per socket,
drained until ``BlockingIOError``), and ``echo-epoll``, the engine's per-datagram way of reading
(one epoll set behind one reader, ``media/poller.py`` with ``ring=False``): the floor of a Python
relay that makes one system call per datagram, which the engine's batched I/O (io_uring, the
numpy relay table) goes below.

The server (engine or echo) runs in its own process pinned to the idler CPU and the load
generator (``bench/loadgen_rtp.py``, ``sendmmsg``/``recvmmsg``) in another pinned to the other
one; the call count grows step by step, every server measured back to back at each step, until
a server fails.  Each step also reports the server's CPU use, from which a per-core figure is
extrapolated (useful when the generator, not the server, is the limit: see its CPU column).  On
a shared machine run it under ``chrt -f 10`` so that other work does not preempt either process.

    chrt -f 10 .venv/bin/python bench/media_relay.py [--steps 400,600,800,1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import resource
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import loadgen_rtp as lg

from trunkline.gateway.config import RtpConfig
from trunkline.gateway.sip.sdp import (
    OPUS,
    PCMU,
    TELEPHONE_EVENT_8000,
    TELEPHONE_EVENT_48000,
    NegotiatedMedia,
    RtpFormat,
)
from trunkline.media.engine import MediaEngine

MAX_LOSS = 0.001
MAX_P99_MS = 10.0


def _negotiated(port: int, codec: RtpFormat, te: RtpFormat) -> NegotiatedMedia:
    # remote_rtcp_port 0: the generator does not listen for RTCP.
    return NegotiatedMedia("127.0.0.1", port, "127.0.0.1", 0, codec, te, 20, "sendrecv", False, 0)


def engine_worker(
    conn: Connection, calls: int, mode: str, gen_ports: tuple[int, int], cpu: int | None, use_uvloop: bool
) -> None:
    """Server process: ``calls`` bridged call pairs; leg A faces generator socket A, leg B socket B."""
    lg.pin(cpu)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8 * calls + 256)), hard))
    if use_uvloop:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def run() -> None:
        engine = MediaEngine(RtpConfig("127.0.0.1", 20000, 59999), loop)
        codec_b, te_b = (OPUS, TELEPHONE_EVENT_48000) if mode == "transcode" else (PCMU, TELEPHONE_EVENT_8000)
        targets = []
        for _ in range(calls):
            a = await engine.open_stream()
            b = await engine.open_stream()
            a.configure(_negotiated(gen_ports[0], PCMU, TELEPHONE_EVENT_8000))
            b.configure(_negotiated(gen_ports[1], codec_b, te_b))
            engine.bridge(a, b)
            targets.append((a.local_port, b.local_port))
        await engine.start()
        # Settle the heap after building thousands of streams (a full collection now rather
        # than one triggered by the set-up's survivors inside the measured window), then
        # record every collection that does happen while measuring.
        gc.collect()
        pauses: list[float] = []

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                pauses.append(time.perf_counter())
            elif pauses:
                pauses[-1] = time.perf_counter() - pauses[-1]

        gc.callbacks.append(on_gc)
        conn.send(targets)
        stop = loop.create_future()
        loop.add_reader(conn.fileno(), lambda: stop.done() or stop.set_result(None))
        await asyncio.sleep(0.3)  # let the generator's warm-up start before measuring
        cpu0, wall0, ticks0 = time.process_time(), loop.time(), engine.ticks
        late0, busy0 = engine.late_ticks, engine.busy_seconds
        lost0 = sum(s.jitter.lost for s in engine.streams)
        late0 = sum(s.jitter.late for s in engine.streams)
        net0 = sum(s.rx_stats.lost for s in engine.streams if s.rx_stats is not None)
        poller = getattr(engine, "poller", None)  # absent in engines before the shared poller
        wake0, disp0 = (poller.wakeups, poller.dispatched) if poller is not None else (0, 0)
        await stop
        conn.recv()
        streams = engine.streams
        stats = {
            "cpu_s": time.process_time() - cpu0,
            "wall_s": loop.time() - wall0,
            "ticks": engine.ticks - ticks0,
            "late_ticks": engine.late_ticks - late0,
            "missed_ticks": engine.missed_ticks,
            "max_lateness_ms": engine.max_lateness * 1000,
            "tick_busy_s": engine.busy_seconds - busy0,
            "relayed": sum(s.stats.packets_relayed for s in streams),
            "sent": sum(s.stats.packets_sent for s in streams),
            "received": sum(s.stats.packets_received for s in streams),
            "send_drops": sum(s.stats.send_drops for s in streams),
            "jb_lost": sum(s.jitter.lost for s in streams) - lost0,  # includes the end-of-run tail
            "jb_late": sum(s.jitter.late for s in streams) - late0,
            "net_lost": sum(s.rx_stats.lost for s in streams if s.rx_stats is not None) - net0,
            "poll_wakeups": (poller.wakeups - wake0) if poller is not None else 0,
            "poll_dispatched": (poller.dispatched - disp0) if poller is not None else 0,
            "gc_max_ms": 1000 * max(pauses, default=0.0),
        }
        gc.callbacks.remove(on_gc)
        conn.send(stats)
        await engine.stop()

    loop.run_until_complete(run())


@dataclass(slots=True)
class Step:
    server: str
    calls: int
    load: lg.LoadResult
    stats: dict[str, Any]

    @property
    def util(self) -> float:
        return self.stats["cpu_s"] / self.stats["wall_s"] if self.stats.get("wall_s") else 0.0

    @property
    def us_per_packet(self) -> float:
        """Server CPU time per packet it forwarded (relayed or echoed)."""
        forwarded = self.stats.get("relayed", self.load.received)
        return self.stats["cpu_s"] / forwarded * 1e6 if forwarded else float("nan")

    @property
    def passed(self) -> bool:
        return self.load.loss < MAX_LOSS and self.load.delay_percentile(99) < MAX_P99_MS


def _per_wakeup(stats: dict[str, Any]) -> str:
    if "poll_wakeups" not in stats:
        return ""
    return (
        f" datagrams per wake-up {stats['poll_dispatched'] / max(1, stats['poll_wakeups']):.1f}"
        f", longest GC pause {stats.get('gc_max_ms', 0.0):.1f} ms"
    )


def run_step(
    gen: lg.Generator, server: str, calls: int, seconds: float, cpu: int | None, use_uvloop: bool
) -> Step:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    if server.startswith("echo"):
        proc = ctx.Process(
            target=lg.echo_worker, args=(child, calls, cpu, use_uvloop, server == "echo-epoll"), daemon=True
        )
    else:
        proc = ctx.Process(
            target=engine_worker,
            args=(child, calls, "relay", (gen.port_a, gen.port_b), cpu, use_uvloop),
            daemon=True,
        )
    proc.start()
    targets = parent.recv()
    load = gen.run(targets, seconds)
    parent.send("stop")
    stats = parent.recv()
    if server.startswith("echo"):
        stats["wall_s"] = load.wall_s
    proc.join(10)
    return Step(server, calls, load, stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100,200,300,400,600,800,1000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--servers",
        default="echo,echo-epoll,engine",
        help="servers measured at each step, in this order (echo and engine at least)",
    )
    parser.add_argument(
        "--no-uvloop",
        action="store_true",
        help="engine and echo on the default asyncio loop (else uvloop)",
    )
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    servers = args.servers.split(",")
    if not {"echo", "engine"} <= set(servers) <= {"echo", "echo-epoll", "engine"}:
        parser.error("--servers: echo and engine (the reference is part of every run), optionally echo-epoll")
    server_cpu, gen_cpu = lg.pick_cpus()
    gen = lg.Generator(gen_cpu)
    results: dict[str, list[Step]] = {server: [] for server in servers}
    # Interleaved: each step measures every server back to back, under the same conditions.
    active = list(servers)
    for calls in steps:
        for server in list(active):
            step = run_step(gen, server, calls, args.seconds, server_cpu, not args.no_uvloop)
            results[server].append(step)
            print(
                f"  {server:10} {calls:5} calls: loss {step.load.loss:.3%} "
                f"p99 {step.load.delay_percentile(99):.2f} ms "
                f"server CPU {step.util:.0%} ({step.us_per_packet:.1f} us/packet) "
                f"generator CPU {step.load.busy:.0%}{_per_wakeup(step.stats)}",
                file=sys.stderr,
            )
            if not step.passed:
                active.remove(server)
        if not active:
            break
    gen.close()
    _report(args, servers, results)


def _report(args: argparse.Namespace, servers: list[str], results: dict[str, list[Step]]) -> None:
    cmd = "bench/media_relay.py " + " ".join(sys.argv[1:])
    print(f"### Relayed G.711 calls per core\n\nCommand: `.venv/bin/python {cmd.strip()}`  ")
    print(f"Event loop: {'asyncio default' if args.no_uvloop else 'uvloop'} (engine and echo alike)  ")
    print(
        f"Load average at the end: {os.getloadavg()[0]:.2f} "
        f"(other processes share these {os.cpu_count()} CPUs)\n"
    )
    print(
        "| server | calls | packets/s in | loss | p50 ms | p99 ms "
        "| server CPU | CPU us/packet | generator CPU | late ticks | ok |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for server in servers:
        for s in results[server]:
            late = f"{s.stats.get('late_ticks', 0)}/{s.stats.get('ticks', 0)}" if server == "engine" else "-"
            print(
                f"| {server} | {s.calls} | {s.load.stamped / args.seconds:,.0f} | {s.load.loss:.3%} "
                f"| {s.load.delay_percentile(50):.2f} | {s.load.delay_percentile(99):.2f} | {s.util:.0%} "
                f"| {s.us_per_packet:.1f} | {s.load.busy:.0%} | {late} | {'yes' if s.passed else 'no'} |"
            )
    print()
    core: dict[str, float] = {}
    passed: dict[str, float] = {}
    for server in servers:
        ok = [s for s in results[server] if s.passed]
        best = ok[-1] if ok else None
        passed[server] = best.load.stamped / args.seconds if best else 0.0
        # CPU cost per forwarded packet at the largest load run, amortising fixed costs: a figure
        # that holds even when other processes steal the CPU (wall-clock criteria then fail early).
        largest = results[server][-1]
        us = largest.us_per_packet
        core[server] = 1e6 / us if us == us else 0.0
        label = "engine" if server == "engine" else f"reference ({server})"
        print(
            f"- {label}: **{best.calls if best else 0} calls** passed ({passed[server]:,.0f} packets/s); "
            f"CPU cost at {largest.calls} calls => {core[server]:,.0f} packets/s per core = "
            f"**{core[server] / 100:,.0f} calls per core** (100 packets/s forwarded per call)"
        )
    if passed["echo"] and core["echo"]:
        print(
            f"- ratio engine/echo: {passed['engine'] / passed['echo']:.2f} measured, "
            f"{core['engine'] / core['echo']:.2f} by CPU cost"
        )


if __name__ == "__main__":
    main()
