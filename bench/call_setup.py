"""How many calls per second does the full switch set up from a cached TwiML document, on one core?

A call is what a real inbound call goes through: SIPp's INVITE -> the switch (call record stored,
180, RTP port pair bound) -> the number's ``voice_url`` (GET, answered from the TwiML cache after
the first call: the customer's app sends ``Cache-Control: max-age=300``) -> 200 OK with SDP ->
the verbs -> Trunkline's BYE -> the final status stored.  SIPp runs
``tests/peers/scenarios/uac_bye_from_remote.xml`` (it waits for our BYE).

The Trunkline server process pins itself to CPU 0 (``os.sched_setaffinity``), runs on uvloop with
logging at WARNING and ``gc.freeze()`` after start-up (as ``trunkline serve`` does); SIPp and the
customer's app (aiohttp, its own process) share CPU 1.  The highest rate that is kept up (0 failed
calls and at most 1 % of INVITEs retransmitted, i.e. answered later than 500 ms) is found by
doubling then bisecting over short steps (``--step`` s), then confirmed over ``--confirm`` s (30 by
default) in a fresh server.  In the same run SIPp's own ``uas`` is measured as
``bench/sip_cps.py`` does (SIPp's built-in ``uac``, 0 failed calls): the C ceiling of the load
generator and the loopback.  The server's CPU time per call (all its threads, on its one core)
and the share of it spent in the cyclic garbage collector are printed for the confirmation run.

    .venv/bin/python bench/call_setup.py [--twiml hangup|say] [--method GET|POST]
        [--cache-control "public, max-age=300"] [--step 8] [--confirm 30] [--start 100]
        [--max 3000] [--no-reference] [--profile FILE]

``--twiml hangup`` serves ``<Response><Hangup/></Response>`` (answer, then BYE at once);
``--twiml say`` serves ``<Response><Say>Hi</Say><Hangup/></Response>`` (answer, ~0.5 s of
synthesised speech over RTP, BYE).  ``--method POST`` (Twilio's default, never cached) or
``--cache-control no-store`` measure the uncached path.  ``--profile FILE`` writes a cProfile of
the server process during the confirmation run.  Prints a markdown table with the ratio
Trunkline / SIPp uas.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sip_cps  # reuse the SIPp runner and the uas reference

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "peers" / "scenarios" / "uac_bye_from_remote.xml"
DOCUMENTS = {
    "hangup": "<Response><Hangup/></Response>",
    "say": "<Response><Say>Hi</Say><Hangup/></Response>",
}
CACHE_CONTROL = "public, max-age=300"
NUMBER = "+15551230000"  # the called number: a phone number, as a trunk sends it

APP_SCRIPT = r"""
import os, sys
from aiohttp import web
os.sched_setaffinity(0, {int(sys.argv[2])})
document, seen, cache_control = sys.argv[1], [0], sys.argv[4]

async def voice(request):
    seen[0] += 1
    if request.method == "POST":
        await request.post()
    return web.Response(text=document, content_type="text/xml", headers={"Cache-Control": cache_control})

async def count(request):
    return web.Response(text=str(seen[0]))

app = web.Application()
app.router.add_route("*", "/voice", voice)
app.router.add_get("/count", count)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[3]), print=None, access_log=None)
"""

SERVER_SCRIPT = r"""
import asyncio, cProfile, dataclasses, gc, ipaddress, logging, os, sys, time
from pathlib import Path
os.sched_setaffinity(0, {int(sys.argv[2])})
from trunkline.gateway.config import (Account, Config, HttpConfig, ListenAddress, NumberRoute,
    RtpConfig, SipConfig, StorageConfig, Trunk)
from trunkline.gateway.server import Server, freeze_startup_objects, new_event_loop

logging.basicConfig(level=logging.WARNING)
ACCOUNT = Account("AC" + "be" * 16, "bench-auth-token-0123456789abcdef")
gc_time, gc_start = [0.0, 0.0, 0.0], [0.0]

def on_gc(phase, info):
    if phase == "start":
        gc_start[0] = time.perf_counter()
    else:
        gc_time[info["generation"]] += time.perf_counter() - gc_start[0]

async def main() -> None:
    sip = dataclasses.replace(SipConfig(), listen=(ListenAddress("udp", "127.0.0.1", 0),))
    trunk = Trunk("bench", "127.0.0.1", inbound_ips=(ipaddress.ip_network("127.0.0.1/32"),),
                  outbound=False)
    var = Path("var-" + str(os.getpid()))
    storage = StorageConfig(data_dir=var, database=var / "trunkline.db",
                            recordings_dir=var / "recordings", cache_dir=var / "cache")
    route = NumberRoute(match="*", account=ACCOUNT.sid, voice_url=sys.argv[1], voice_method=sys.argv[3])
    config = Config(sip=sip, rtp=RtpConfig("127.0.0.1", 20000, 59999), http=HttpConfig(port=0),
                    accounts=(ACCOUNT,), numbers=(route,), trunks=(trunk,), storage=storage)
    server = Server(config)
    await server.start()
    freeze_startup_objects()  # as trunkline.gateway.server.run() does
    print(server.sip.first("udp").local_address[1], flush=True)
    profile = cProfile.Profile() if len(sys.argv) > 4 else None
    if profile is not None:
        profile.enable()
    gc.callbacks.append(on_gc)
    cpu, loop_cpu = time.process_time(), time.thread_time()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    gc.callbacks.remove(on_gc)
    if profile is not None:
        profile.disable()
        profile.dump_stats(sys.argv[4])
    cache = server.webhooks.cache if server.webhooks is not None else None
    if cache is not None:
        print(f"cache hits={cache.hits} misses={cache.misses}", file=sys.stderr, flush=True)
    print(f"cpu={cpu:.3f} gc={sum(gc_time):.3f} loop={loop_cpu:.3f}", file=sys.stderr, flush=True)
    await server.stop()

loop = new_event_loop()
loop.run_until_complete(main())
"""


class App:
    """The customer's app in its own process on ``cpu``."""

    def __init__(self, document: str, cpu: int, workdir: Path, cache_control: str = CACHE_CONTROL) -> None:
        self.port = sip_cps.free_udp_port()  # a free TCP port in practice on loopback
        self.proc = subprocess.Popen(
            [sys.executable, "-c", APP_SCRIPT, document, str(cpu), str(self.port), cache_control],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}/voice"
        deadline = time.monotonic() + 10
        while self.requests() < 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the customer app did not start")
            time.sleep(0.1)

    def requests(self) -> int:
        """Webhook requests the app has served (-1 while it is not up)."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/count", timeout=2) as reply:
                return int(reply.read())
        except OSError:
            return -1

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Switch(sip_cps.Target):
    """The full Trunkline server (switch + media engine + store + webhooks), pinned to CPU 0."""

    def __init__(
        self, voice_url: str, workdir: Path, profile: Path | None = None, method: str = "GET"
    ) -> None:
        super().__init__("trunkline", workdir)
        self.voice_url = voice_url
        self.profile = profile
        self.method = method
        self.cpu = float("nan")
        self.gc = float("nan")
        self.stats = ""

    def __enter__(self) -> Switch:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        extra = [str(self.profile)] if self.profile is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, self.voice_url, "0", self.method, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=self.workdir, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            assert self.proc.stderr is not None
            raise RuntimeError("server did not start: " + self.proc.stderr.read()[-2000:])
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        stderr = self.proc.stderr.read() if self.proc.stderr is not None else ""
        self.stats = next((ln for ln in stderr.splitlines() if ln.startswith("cache ")), "")
        cpu = next((ln for ln in stderr.splitlines() if ln.startswith("cpu=")), "cpu=nan gc=nan loop=nan")
        self.cpu, self.gc, self.loop_cpu = (float(part.split("=")[1]) for part in cpu.split())


def run_call(port: int, rate: int, seconds: float, workdir: Path) -> sip_cps.Run:
    """SIPp calls ``port`` at ``rate`` for ``seconds`` with the BYE-from-remote scenario."""
    calls = int(rate * seconds)
    stat = workdir / f"uac-{rate}-{time.monotonic_ns()}.csv"
    cmd = [
        *sip_cps.pin(1), sip_cps.SIPP, f"127.0.0.1:{port}", "-sf", str(SCENARIO), "-i", "127.0.0.1",
        "-s", NUMBER, "-p", str(sip_cps.free_udp_port()), "-m", str(calls), "-r", str(rate),
        "-l", str(max(100, rate * 4)), "-timeout", f"{seconds + 20:g}s", "-timeout_error",
        "-recv_timeout", "5000", "-cp", str(sip_cps.free_udp_port()), "-trace_stat", "-stf", str(stat),
        "-fd", "1", "-nostdin",
    ]  # fmt: skip
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=workdir)  # fmt: skip
    return _read(stat, rate, seconds)


def _read(stat: Path, rate: int, seconds: float) -> sip_cps.Run:
    import csv
    import io

    text = stat.read_text() if stat.exists() else ""
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=";") if r]
    counters = dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}

    def get(name: str) -> int:
        try:
            return int(float(counters.get(f"{name}(C)", counters.get(name, "0")) or 0))
        except ValueError:
            return 0

    return sip_cps.Run(
        rate, seconds, get("SuccessfulCall"), get("FailedCall"), get("TotalCallCreated"),
        get("Retransmissions"),
    )  # fmt: skip


@dataclass
class Result:
    """The best clean rate of the switch, its confirmation run and the server's CPU time then."""

    rate: int
    run: sip_cps.Run
    stats: str
    cpu_s: float
    gc_s: float

    @property
    def cpu_per_call_us(self) -> float:
        return self.cpu_s / self.run.successful * 1e6 if self.run.successful else float("nan")


def kept_up(run: sip_cps.Run) -> bool:
    """0 failed calls, every call made, and at most 1 % of INVITEs retransmitted.

    SIPp retransmits an INVITE unanswered after 500 ms and only fails the call after 64*T1, so
    "0 failed" alone hides a server that falls further behind every second.
    """
    return run.clean and run.retransmissions <= run.created // 100


def search_switch(
    voice_url: str, method: str, start: int, maximum: int, step_s: float, confirm_s: float,
    workdir: Path, profile: Path | None,
) -> Result:  # fmt: skip
    """Double, then bisect to 5 %, then confirm in a fresh server (as ``sip_cps.search``)."""
    best, worst, rate = 0, maximum + 1, start

    def step(rate: int) -> bool:
        # A fresh server per step: an overloaded step leaves a backlog (retransmissions, calls
        # still ending) that would otherwise fail the next, lower rate too.
        with Switch(voice_url, workdir, method=method) as target:
            result = run_call(target.port, rate, step_s, workdir)
        print(f"  trunkline  {rate:5d} cps x {step_s:g}s: {result.successful} ok, {result.failed} failed, "
              f"{result.retransmissions} INVITE retransmissions", flush=True)  # fmt: skip
        return kept_up(result)

    while rate <= maximum:
        if not step(rate):
            worst = rate
            break
        best, rate = rate, rate * 2
    while worst - best > max(5, best // 20) and best < maximum:
        rate = (best + worst) // 2
        if step(rate):
            best = rate
        else:
            worst = rate
    result = Result(0, sip_cps.Run(0, 0, 0, 0, 0, 0), "", float("nan"), float("nan"))
    while best > 0:
        with Switch(voice_url, workdir, profile, method) as target:
            confirm = run_call(target.port, best, confirm_s, workdir)
        result = Result(best, confirm, target.stats, target.cpu, target.gc)
        print(f"  trunkline  {best:5d} cps x {confirm_s:g}s (confirmation): {confirm.successful} ok, "
              f"{confirm.failed} failed, {confirm.retransmissions} INVITE retransmissions; {target.stats}; "
              f"server CPU {result.cpu_per_call_us:.0f} us/call",
              flush=True)  # fmt: skip
        if kept_up(confirm):
            break
        best = int(best * 0.85)
    if not kept_up(result.run):
        result.rate = 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--twiml", choices=sorted(DOCUMENTS), default="hangup", help="document served")
    parser.add_argument("--method", choices=("GET", "POST"), default="GET", help="voice_method")
    parser.add_argument("--cache-control", default=CACHE_CONTROL, help="the app's Cache-Control header")
    parser.add_argument("--step", type=float, default=8.0, help="seconds per search step")
    parser.add_argument("--confirm", type=float, default=30.0, help="seconds of the confirmation run")
    parser.add_argument("--start", type=int, default=100, help="first rate tried (calls/s)")
    parser.add_argument("--max", type=int, default=3000, help="highest rate tried (calls/s)")
    parser.add_argument("--ref-start", type=int, default=1000, help="first rate tried for SIPp uas")
    parser.add_argument("--ref-max", type=int, default=4000, help="highest rate tried for SIPp uas")
    parser.add_argument("--no-reference", action="store_true", help="skip the SIPp uas reference")
    parser.add_argument("--profile", type=Path, help="cProfile the server during the confirmation run")
    args = parser.parse_args()
    document = DOCUMENTS[args.twiml]
    with tempfile.TemporaryDirectory(prefix="call-setup-") as tmp:
        workdir = Path(tmp)
        app = App(document, 1, workdir, args.cache_control)
        try:
            profile = args.profile.resolve() if args.profile else None
            ours = search_switch(
                app.url, args.method, args.start, args.max, args.step, args.confirm, workdir, profile
            )
            app_requests = app.requests()
        finally:
            app.close()
        ref, ref_run = 0, sip_cps.Run(0, 0, 0, 0, 0, 0)
        if not args.no_reference:
            ref, ref_run = sip_cps.search(
                "sipp-uas", args.ref_start, args.ref_max, args.step, args.confirm, workdir
            )
    python = f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}"
    load = os.getloadavg()[0]
    run = ours.run
    print(f"\n`{' '.join(['.venv/bin/python', 'bench/call_setup.py', *sys.argv[1:]])}` "
          f"({python}, server on CPU 0, SIPp + app on CPU 1, load average {load:.1f})\n")  # fmt: skip
    print(f"Document: `{document}` ({args.method}, app sends `Cache-Control: {args.cache_control}`); "
          f"webhook requests the app served: {app_requests}; confirmation run {ours.stats}\n")  # fmt: skip
    print("| answering side | calls/s kept up | confirmation run | retransmissions | server CPU/call "
          "| of which cyclic GC |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|")
    print(f"| Trunkline (switch + TwiML + media + store) | {ours.rate} | "
          f"{run.successful}/{run.created} calls in {run.seconds:g} s | {run.retransmissions} | "
          f"{ours.cpu_per_call_us:,.0f} us | {ours.gc_s / ours.cpu_s:.0%} |")  # fmt: skip
    if not args.no_reference:
        capped = "≥ " if ref >= args.ref_max else ""  # the search stops at --ref-max
        print(f"| SIPp -sn uas (C reference, SIPp hangs up) | {capped}{ref} | "
              f"{ref_run.successful}/{ref_run.created} calls in {ref_run.seconds:g} s | "
              f"{ref_run.retransmissions} | | |")  # fmt: skip
        print(f"\nTrunkline / SIPp uas: {ours.rate / ref:.2f}" if ref else "\nSIPp uas: no clean rate")
    print("(kept up: 0 failed calls and at most 1 % of INVITEs retransmitted, i.e. answered after 500 ms;"
          " SIPp uas: 0 failed calls, as bench/sip_cps.py)")  # fmt: skip
    print(f"Target 300 calls/s: {'met' if ours.rate >= 300 else 'NOT met'}")


if __name__ == "__main__":
    main()
