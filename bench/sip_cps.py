"""How many calls per second does Trunkline set up and tear down on one core?

SIPp's built-in ``uac`` calls a Trunkline server (the SIP core + call legs + the demo handler
answering every call; SIPp hangs up at once, ``-d 0``) at increasing rates; the highest rate
with 0 failed calls (and every call completed) is the figure.  In the same run SIPp's own
``uas`` is measured the same way: the C ceiling of the load generator and the loopback.

The server process is pinned to CPU 0 and SIPp to CPU 1 (``taskset``), the server runs on
uvloop with logging at WARNING.  Search steps are short (``--step`` seconds); the best rate
found is then confirmed over ``--confirm`` seconds (30 by default, as the issue asks).

    .venv/bin/python bench/sip_cps.py [--step 5] [--confirm 30] [--start 50] [--max 2000]

Prints a markdown table and the ratio Trunkline / SIPp uas.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIPP = shutil.which("sipp") or "/usr/bin/sipp"

SERVER_SCRIPT = r"""
import asyncio, dataclasses, ipaddress, logging, sys
from trunkline.gateway.config import Config, HttpConfig, ListenAddress, RtpConfig, SipConfig, Trunk
from trunkline.gateway.server import Server, new_event_loop

logging.basicConfig(level=logging.WARNING)

async def main() -> None:
    sip = dataclasses.replace(SipConfig(), listen=(ListenAddress("udp", "127.0.0.1", 0),))
    trunk = Trunk("bench", "127.0.0.1", inbound_ips=(ipaddress.ip_network("127.0.0.1/32"),))
    rtp = RtpConfig("127.0.0.1", 20000, 59999)
    config = dataclasses.replace(Config.default(), sip=sip, http=HttpConfig(port=0), rtp=rtp, trunks=(trunk,))
    server = Server(config, demo_hangup=None)
    await server.start()
    transport = server.sip.first("udp")
    print(transport.local_address[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(server.core.stats, file=sys.stderr, flush=True)
    await server.stop()

loop = new_event_loop()
loop.run_until_complete(main())
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


@dataclass
class Run:
    rate: int
    seconds: float
    successful: int
    failed: int
    created: int
    retransmissions: int

    @property
    def clean(self) -> bool:
        return (
            self.failed == 0
            and self.successful == self.created
            and self.created >= int(self.rate * self.seconds)
        )


def run_uac(port: int, rate: int, seconds: float, workdir: Path) -> Run:
    calls = int(rate * seconds)
    stat = workdir / f"uac-{rate}-{time.monotonic_ns()}.csv"
    cmd = [
        *pin(1), SIPP, f"127.0.0.1:{port}", "-sn", "uac", "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-m", str(calls), "-r", str(rate), "-d", "0", "-l", str(max(100, rate * 4)),
        "-timeout", f"{seconds + 20:g}s", "-timeout_error", "-recv_timeout", "5000",
        "-cp", str(free_udp_port()), "-trace_stat", "-stf", str(stat), "-fd", "1", "-nostdin",
    ]  # fmt: skip
    subprocess.run(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir
    )
    rows = [r for r in csv.reader(io.StringIO(stat.read_text() if stat.exists() else ""), delimiter=";") if r]
    counters = dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}

    def get(name: str) -> int:
        try:
            return int(float(counters.get(f"{name}(C)", counters.get(name, "0")) or 0))
        except ValueError:
            return 0

    return Run(
        rate,
        seconds,
        get("SuccessfulCall"),
        get("FailedCall"),
        get("TotalCallCreated"),
        get("Retransmissions"),
    )


class Target:
    """Something SIPp calls: the Trunkline server or SIPp's uas, pinned to CPU 0."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> Target:
        if self.kind == "trunkline":
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            self.proc = subprocess.Popen(
                [*pin(0), sys.executable, "-c", SERVER_SCRIPT],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                cwd=self.workdir, env=env,
            )  # fmt: skip
            assert self.proc.stdout is not None
            self.port = int(self.proc.stdout.readline())
        else:
            self.port = free_udp_port()
            self.proc = subprocess.Popen(
                [*pin(0), SIPP, "-sn", "uas", "-i", "127.0.0.1", "-p", str(self.port), "-nostdin",
                 "-cp", str(free_udp_port())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=self.workdir,
            )  # fmt: skip
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.kind == "trunkline" and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        else:
            self.proc.kill()
            self.proc.wait()


def search(
    kind: str, start: int, maximum: int, step_s: float, confirm_s: float, workdir: Path
) -> tuple[int, Run]:
    """Double the rate until a step fails, bisect between the last clean and first failing
    rate (to 5 %), then confirm; return the best clean rate and its confirmation run."""
    best = 0
    worst = maximum + 1
    rate = start
    with Target(kind, workdir) as target:
        while rate <= maximum:
            result = run_uac(target.port, rate, step_s, workdir)
            print(
                f"  {kind:10s} {rate:5d} cps x {step_s:g}s: {result.successful} ok, {result.failed} failed",
                flush=True,
            )
            if result.clean:
                best = rate
                rate *= 2
            else:
                worst = rate
                break
        while worst - best > max(5, best // 20) and best < maximum:
            rate = (best + worst) // 2
            result = run_uac(target.port, rate, step_s, workdir)
            print(
                f"  {kind:10s} {rate:5d} cps x {step_s:g}s: {result.successful} ok, {result.failed} failed",
                flush=True,
            )
            if result.clean:
                best = rate
            else:
                worst = rate
    confirm = Run(0, 0, 0, 0, 0, 0)
    while best > 0:
        with Target(kind, workdir) as target:  # a fresh process for the long run
            confirm = run_uac(target.port, best, confirm_s, workdir)
        print(f"  {kind:10s} {best:5d} cps x {confirm_s:g}s (confirmation): {confirm.successful} ok, "
              f"{confirm.failed} failed", flush=True)  # fmt: skip
        if confirm.clean:
            break
        best = int(best * 0.9)
    return best, confirm


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--step", type=float, default=5.0, help="seconds per search step")
    parser.add_argument("--confirm", type=float, default=30.0, help="seconds of the confirmation run")
    parser.add_argument("--start", type=int, default=50, help="first rate tried (calls/s)")
    parser.add_argument("--max", type=int, default=4000, help="highest rate tried (calls/s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sip-cps-") as tmp:
        workdir = Path(tmp)
        results = {}
        for kind in ("trunkline", "sipp-uas"):
            results[kind] = search(kind, args.start, args.max, args.step, args.confirm, workdir)
    ours, ref = results["trunkline"][0], results["sipp-uas"][0]
    print()
    python = f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}"
    print(f"Call set-up + tear-down rate with 0 failed calls ({python}, server on CPU 0, SIPp on CPU 1)\n")
    print("| answering side | calls/s (0 failed) | confirmation run | retransmissions |")
    print("|---|---:|---|---:|")
    for kind, (rate, run) in results.items():
        label = (
            "Trunkline (SipCore + legs + demo handler)"
            if kind == "trunkline"
            else "SIPp -sn uas (C reference)"
        )
        confirmed = f"{run.successful}/{run.created} calls in {run.seconds:g} s"
        print(f"| {label} | {rate} | {confirmed} | {run.retransmissions} |")
    print(f"\nTrunkline / SIPp uas: {ours / ref:.2f}" if ref else "\nSIPp uas: no clean rate")
    print(f"Target 300 calls/s: {'met' if ours >= 300 else 'NOT met'}")


if __name__ == "__main__":
    main()
