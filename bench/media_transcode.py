"""Transcoded G.711 <-> Opus calls per core, beside libopus alone on the same frames.

Question: how many bridged calls with one PCMU leg and one Opus leg (every 20 ms per call: one
Opus decode, one Opus encode, G.711 decode/encode batched, libopus running at 8 kHz so no resampling)
can the media engine carry on one core, compared with what libopus alone costs for the Opus
encode + decode of those calls (measured in the same run, through PyAV like the engine)?

A step passes when the engine keeps its clock (no missed tick, < 1 % of ticks later than
5 ms) and < 0.1 % of the input packets are lost or arrive too late for playout (the engine
draining its sockets too late shows up as late packets).
The load generator (``bench/loadgen_rtp.py``) runs in another process on the other CPU.

    .venv/bin/python bench/media_transcode.py [--steps 10,20,30,40,60,80,100,120] [--seconds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from fractions import Fraction
from typing import Any

import av
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import loadgen_rtp as lg
import media_relay

from trunkline.codecs.g711 import ulaw_encode
from trunkline.codecs.opus import OpusDecoder, OpusEncoder

MAX_INPUT_LOSS = 0.001


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)


def libopus_frame_cost(frames: int = 500, rate: int = 48000, complexity: int | None = None) -> float:
    """Seconds for one 20 ms Opus encode + decode (mono, 32 kbit/s) with PyAV's libopus alone.

    Both ends at ``rate`` (FFmpeg's libopus decoder always outputs 48 kHz; the engine's own
    decoder runs at ``rate``), at ``complexity`` (libopus's default 10 when ``None``).
    """
    n = rate // 50
    pcm = tone(440, rate, frames * 0.02)
    enc: Any = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = rate, "mono", "s16", 32000
    enc.time_base = Fraction(1, rate)
    options = {"application": "voip", "frame_duration": "20"}
    if complexity is not None:
        options["compression_level"] = str(complexity)
    enc.options = options
    enc.open()
    dec: Any = av.CodecContext.create("libopus", "r")
    dec.sample_rate, dec.layout, dec.format = 48000, "mono", "s16"
    dec.open()
    chunks = pcm.reshape(-1, n)
    best = float("inf")
    for _ in range(3):
        start = time.process_time()  # CPU time: robust when other processes share the core
        for i, chunk in enumerate(chunks):
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = i * n
            for packet in enc.encode(frame):
                dec.decode(packet)
        best = min(best, (time.process_time() - start) / len(chunks))
    return best


def libopus_engine_cost(packets: list[bytes], frames: int = 500) -> float:
    """CPU seconds for one 8 kHz encode (complexity 5) + one 8 kHz decode of ``packets``, libopus only."""
    enc, dec = OpusEncoder(sample_rate=8000), OpusDecoder(sample_rate=8000)
    pcm = tone(440, 8000, frames * 0.02).reshape(-1, 160)
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for i, chunk in enumerate(pcm):
            enc.encode(chunk)
            dec.decode(packets[i % len(packets)])
        best = min(best, (time.process_time() - start) / len(pcm))
    return best


def offline_cost(calls: int, rings: dict[str, Any], ticks: int = 150) -> float:
    """CPU seconds per call per tick with no load generator: packets fed by ``handle_rtp``.

    The engine's own work on a 20 ms tick (jitter buffers, G.711 batches, Opus decode and
    encode, routing, ``sendto``) with explicit times, measured as CPU time of this process:
    a figure that holds on a shared machine, where the wall-clock steps above fail early.
    It leaves out the socket reads (about 5 us per packet, see ``bench/media_relay.py``).
    """
    import asyncio
    import socket
    import struct

    from trunkline.gateway.config import RtpConfig
    from trunkline.gateway.sip.sdp import OPUS, PCMU, TELEPHONE_EVENT_8000, TELEPHONE_EVENT_48000
    from trunkline.media.engine import MediaEngine

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    port = sink.getsockname()[1]
    header = struct.Struct("!BBHII")
    ring_a, ring_b = rings["payload_a"], rings["payload_b"]

    async def run() -> float:
        engine = MediaEngine(RtpConfig("127.0.0.1", 40000, 49999), asyncio.get_running_loop())
        pairs = []
        for _ in range(calls):
            a, b = await engine.open_stream(), await engine.open_stream()
            a.configure(media_relay._negotiated(port, PCMU, TELEPHONE_EVENT_8000))
            b.configure(media_relay._negotiated(port, OPUS, TELEPHONE_EVENT_48000))
            engine.bridge(a, b)
            pairs.append((a, b))
        addr = ("127.0.0.1", port)
        now, cpu = 1000.0, 0.0
        for k in range(ticks + 20):
            for i, (a, b) in enumerate(pairs):
                a.handle_rtp(header.pack(0x80, 0, k, k * 160, 1000 + i) + ring_a[k % len(ring_a)], addr, now)
                b.handle_rtp(
                    header.pack(0x80, 111, k, k * 960, 5000 + i) + ring_b[k % len(ring_b)], addr, now
                )
            start = time.process_time()
            engine.process_tick(now)
            if k >= 20:  # after the jitter buffers have filled
                cpu += time.process_time() - start
            now += 0.020
            while True:
                try:
                    sink.recv(2048)
                except BlockingIOError:
                    break
        for stream in list(engine.streams):
            await stream.close()
        return cpu / ticks / calls

    try:
        return asyncio.run(run())
    finally:
        sink.close()


def passed(stats: dict[str, Any], calls: int) -> bool:
    ticks = max(1, stats["ticks"])
    expected_frames = ticks * 2 * calls
    return (
        stats["missed_ticks"] == 0
        and stats["late_ticks"] <= 0.01 * ticks
        and stats["jb_late"] + stats["net_lost"] <= MAX_INPUT_LOSS * expected_frames
    )


def run_step(
    gen: lg.Generator,
    calls: int,
    seconds: float,
    cpu: int | None,
    rings: dict[str, Any],
    use_uvloop: bool = True,
) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=media_relay.engine_worker,
        args=(child, calls, "transcode", (gen.port_a, gen.port_b), cpu, use_uvloop),
        daemon=True,
    )
    proc.start()
    targets = parent.recv()
    load = gen.run(targets, seconds, **rings)
    parent.send("stop")
    stats: dict[str, Any] = parent.recv()
    proc.join(10)
    stats["load"] = load
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="10,20,30,40,60,80,100,120")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--no-uvloop", action="store_true", help="run the engine on the default asyncio loop")
    parser.add_argument(
        "--offline-calls",
        type=int,
        default=100,
        help="calls for the CPU-per-tick figure without generator (0: skip)",
    )
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    server_cpu, gen_cpu = lg.pick_cpus()
    if server_cpu is not None:
        lg.pin(server_cpu)  # measure libopus on the core the engine will use
    frame_cost = libopus_frame_cost()
    libopus_calls = 0.020 / frame_cost

    pcmu = ulaw_encode(tone(1000, 8000)).reshape(-1, 160)
    enc = OpusEncoder()
    opus = [enc.encode(f) for f in tone(440, 48000).reshape(-1, 960)]
    rings = {
        "payload_a": [row.tobytes() for row in pcmu],
        "payload_b": opus,
        "pt_a": 0,
        "pt_b": 111,
        "step_b": 960,
    }
    offline = offline_cost(args.offline_calls, rings) if args.offline_calls else 0.0
    # The same Opus work at the engine's settings for a G.711 bridge: libopus straight (ctypes),
    # 8 kHz encode at complexity 5 and 8 kHz decode of the generator's packets.
    from trunkline.codecs.opus import DEFAULT_COMPLEXITY as complexity

    frame_cost8 = libopus_engine_cost(opus)
    libopus_calls8 = 0.020 / frame_cost8
    gen = lg.Generator(gen_cpu)
    rows = []
    failures = 0
    for calls in steps:
        stats = run_step(gen, calls, args.seconds, server_cpu, rings, not args.no_uvloop)
        ok = passed(stats, calls)
        util = stats["cpu_s"] / stats["wall_s"]
        rows.append((calls, stats, util, ok))
        print(
            f"  {calls:4} calls: CPU {util:.0%} tick busy {stats['tick_busy_s'] / stats['wall_s']:.0%} "
            f"late {stats['late_ticks']}/{stats['ticks']} missed {stats['missed_ticks']} "
            f"late+lost input {stats['jb_late'] + stats['net_lost']}",
            file=sys.stderr,
        )
        failures = 0 if ok else failures + 1
        if failures >= 2 or util > 0.95:
            break
    gen.close()

    cmd = "bench/media_transcode.py " + " ".join(sys.argv[1:])
    print(f"### Transcoded G.711 <-> Opus calls per core\n\nCommand: `.venv/bin/python {cmd.strip()}`  ")
    print(
        f"Load average at the end: {os.getloadavg()[0]:.2f} "
        f"(other processes share these {os.cpu_count()} CPUs)\n"
    )
    print(
        f"libopus alone (PyAV, same core): {frame_cost * 1e3:.3f} ms per 20 ms frame encode + decode "
        f"=> at most **{libopus_calls:,.0f} calls per core** for Opus work alone  "
    )
    print(
        f"libopus alone at the engine's settings (8 kHz encode, complexity {complexity}, 8 kHz decode): "
        f"{frame_cost8 * 1e3:.3f} ms => at most **{libopus_calls8:,.0f} calls per core**\n"
    )
    print(
        "| calls | engine CPU | CPU ms per call-tick | time in ticks | ms per tick | late ticks | missed "
        "| input late+lost | ok |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for calls, st, util, ok in rows:
        ticks = max(1, st["ticks"])
        print(
            f"| {calls} | {util:.0%} | {st['cpu_s'] / ticks / calls * 1e3:.3f} "
            f"| {st['tick_busy_s'] / st['wall_s']:.0%} "
            f"| {st['tick_busy_s'] / ticks * 1e3:.2f} "
            f"| {st['late_ticks']}/{st['ticks']} | {st['missed_ticks']} | {st['jb_late'] + st['net_lost']} "
            f"| {'yes' if ok else 'no'} |"
        )
    good = [r for r in rows if r[3]]
    calls_ok = good[-1][0] if good else 0
    # CPU cost per call and tick at the largest load run: holds even when other processes steal
    # the CPU (the wall-clock criteria then fail early).
    calls, st, _, _ = rows[-1]
    per_call_tick = st["cpu_s"] / max(1, st["ticks"]) / calls
    per_core = 0.020 / per_call_tick
    print(
        f"\n- engine: **{calls_ok} transcoded calls** passed; CPU cost {per_call_tick * 1e3:.3f} ms "
        f"per call per tick => **{per_core:,.0f} calls per core**"
    )
    if offline:
        print(
            f"- engine tick alone ({args.offline_calls} calls fed in-process, no generator, CPU time): "
            f"{offline * 1e3:.3f} ms per call per tick => **{0.020 / offline:,.0f} calls per core** "
            f"= {0.020 / offline / libopus_calls:.2f} x libopus alone (48 kHz, complexity 10), "
            f"{0.020 / offline / libopus_calls8:.2f} x at the engine's settings"
        )
    print(
        f"- ratio engine/libopus-alone: {calls_ok / libopus_calls:.2f} measured, "
        f"{per_core / libopus_calls:.2f} by CPU cost (48 kHz, complexity 10); "
        f"{per_core / libopus_calls8:.2f} by CPU cost at the engine's settings"
    )


if __name__ == "__main__":
    main()
