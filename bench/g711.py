"""G.711 throughput: numpy lookup tables over a batch of streams vs audioop frame by frame.

Question: how many 20 ms G.711 frames per second can one core encode/decode when the media
engine converts all streams of a tick in one call, compared with the stdlib reference
(``audioop``, C code, one call per frame) measured in the same run?

    .venv/bin/python bench/g711.py [--streams 1000] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np

from trunkline.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FRAME = 160


def _calls_per_second(fn: Callable[[], object], seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        calls += 1
    return calls / elapsed


def rates(a: Callable[[], object], b: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Best calls/s of ``a`` and ``b`` over 5 interleaved rounds (fair on a busy machine)."""
    a(), b()
    best_a = best_b = 0.0
    for _ in range(5):
        best_a = max(best_a, _calls_per_second(a, seconds / 10))
        best_b = max(best_b, _calls_per_second(b, seconds / 10))
    return best_a, best_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    n = args.streams
    rng = np.random.default_rng(0)
    pcm = rng.normal(0, 4000, size=(n, FRAME)).clip(-32768, 32767).astype(np.int16)
    ucodes, acodes = ulaw_encode(pcm), alaw_encode(pcm)
    pcm_frames = [row.tobytes() for row in pcm]
    ucode_frames = [row.tobytes() for row in ucodes]
    acode_frames = [row.tobytes() for row in acodes]
    # Same results from both paths before timing anything.
    assert all(ucodes[i].tobytes() == audioop.lin2ulaw(pcm_frames[i], 2) for i in range(n))
    assert all(ulaw_decode(ucodes)[i].tobytes() == audioop.ulaw2lin(ucode_frames[i], 2) for i in range(n))

    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("µ-law encode", lambda: ulaw_encode(pcm), lambda: [audioop.lin2ulaw(f, 2) for f in pcm_frames]),
        ("µ-law decode", lambda: ulaw_decode(ucodes), lambda: [audioop.ulaw2lin(f, 2) for f in ucode_frames]),
        (
            "µ-law decode from bytes payloads (join + batch + split)",
            lambda: [
                r.tobytes()
                for r in ulaw_decode(np.frombuffer(b"".join(ucode_frames), np.uint8).reshape(n, FRAME))
            ],
            lambda: [audioop.ulaw2lin(f, 2) for f in ucode_frames],
        ),
        ("A-law encode", lambda: alaw_encode(pcm), lambda: [audioop.lin2alaw(f, 2) for f in pcm_frames]),
        ("A-law decode", lambda: alaw_decode(acodes), lambda: [audioop.alaw2lin(f, 2) for f in acode_frames]),
    ]
    print(f"G.711, {n} streams x {FRAME} samples per call (numpy) vs {n} audioop calls per round\n")
    print(
        "| operation | numpy batch frames/s | numpy Msamples/s "
        "| audioop frames/s | audioop Msamples/s | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, batch, reference in cases:
        fast, slow = (r * n for r in rates(batch, reference, args.seconds))
        print(
            f"| {name} | {fast:,.0f} | {fast * FRAME / 1e6:,.1f} | {slow:,.0f} | "
            f"{slow * FRAME / 1e6:,.1f} | {fast / slow:.1f}x |"
        )
    print("\n(one 20 ms frame = 160 samples; real time needs 50 frames/s per stream)")


if __name__ == "__main__":
    main()
