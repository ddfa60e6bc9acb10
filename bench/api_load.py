"""How many REST requests per second does Trunkline's Twilio-compatible API serve on one core?

A Trunkline server (its own process, pinned to CPU 0 with ``os.sched_setaffinity``, uvloop,
logging at WARNING) runs with a known account (:data:`ACCOUNT_SID`, :data:`AUTH_TOKEN`) and one
number route, on a store seeded with ``--records`` call records.  A bounded-concurrency aiohttp
client (another process, pinned to CPU 1, ``--concurrency`` requests in flight over keep-alive
connections) runs each step for ``--warmup`` + ``--duration`` seconds and measures requests/s and
p50/p99 latency over the ``--duration`` window:

* ``GET Calls.json?PageSize=50``: the first page, and a deep page (``Page=90``, offset 4,500 of
  5,000: 90 % of ``--records``);
* ``GET Calls/{sid}.json``: cycling over the seeded SIDs;
* ``POST Calls.json`` with ``To=sip:bench@127.0.0.1:<port>`` of a SIPp UAS
  (``tests/peers/scenarios/uas_answer.xml``) and ``Twiml=<Response><Hangup/></Response>``: the
  call is stored, dialled, answered, its TwiML hangs up; the step is followed by a drain and the
  final statuses of the created calls are read back from the store.  ``--no-sipp`` dials a UDP
  port where nobody listens instead (call creation without the answered call's work).

The reference, measured in the same run, is the same client against a bare aiohttp handler (same
loop, same CPU, no middleware) answering a fixed JSON body of the size Trunkline answered (a list
page, one call record, and the 201 of a POST after reading the form).  The table gives the ratio
Trunkline / reference and the CPU use of both processes over the window, which shows which side
is the bottleneck (a client near 100 % means the reference is the client's ceiling, not aiohttp's).

    .venv/bin/python bench/api_load.py [--duration 15] [--concurrency 32] [--records 5000]
        [--steps list,deep,fetch,create] [--no-sipp] [--profile server.prof]

Each Trunkline step is followed at once by its reference, so both see the same background load.
The machine may be shared: compare figures within one run, and prefer ``req/CPU-s`` (requests
per CPU-second of the server process) to raw requests/s when the server did not get a whole core.
``--profile`` runs the server's event loop thread under cProfile (CPU time) for the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.peers.sipp (the SIPp harness)

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

API = "/2010-04-01"
ACCOUNT_SID = "AC" + "b3" * 16
AUTH_TOKEN = "bench-api-load-token-0123456789ab"
NUMBER = "+15557650000"
TWIML_HANGUP = "<Response><Hangup/></Response>"
SERVER_CPU = 0
CLIENT_CPU = 1


def pin(cpu: int) -> None:
    """Pin the calling process (and the threads it starts later) to ``cpu`` when there are two."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop, as ``trunkline serve`` runs."""
    from trunkline.gateway.server import new_event_loop

    loop: asyncio.AbstractEventLoop = new_event_loop()
    return loop


# --- the Trunkline server process ----------------------------------------------------------------


def bench_config(workdir: Path) -> Any:
    """Trunkline on 127.0.0.1 (ephemeral HTTP/SIP ports), the bench account, every number to it."""
    import dataclasses

    from trunkline.gateway.config import (
        Account,
        Config,
        HttpConfig,
        ListenAddress,
        NumberRoute,
        RtpConfig,
        SipConfig,
        StorageConfig,
    )

    sip = dataclasses.replace(SipConfig(), listen=(ListenAddress("udp", "127.0.0.1", 0),))
    storage = StorageConfig(
        data_dir=workdir / "var",
        database=workdir / "var" / "trunkline.db",
        recordings_dir=workdir / "var" / "recordings",
        cache_dir=workdir / "var" / "cache",
    )
    account = Account(ACCOUNT_SID, AUTH_TOKEN, "API load bench")
    return Config(
        sip=sip,
        rtp=RtpConfig("127.0.0.1", 20000, 29999),
        http=HttpConfig(port=0),
        accounts=(account,),
        numbers=(NumberRoute(match="*", account=account.sid),),
        storage=storage,
    )


async def seed(database: Path, count: int) -> list[str]:
    """Store ``count`` ended calls of the bench account spread over 30 days; return their SIDs."""
    import random

    from trunkline.gateway.store import SqliteStore
    from trunkline.gateway.switch.calls import Call, CallStatus

    rng = random.Random(7)
    store = await SqliteStore(database).open()
    now = time.time()
    sids: list[str] = []
    statuses = [CallStatus.COMPLETED] * 8 + [CallStatus.BUSY, CallStatus.NO_ANSWER]
    try:
        for i in range(count):
            created = now - 30 * 86400 * (1 - i / count)
            status = rng.choice(statuses)
            answered = created + rng.uniform(1, 10) if status is CallStatus.COMPLETED else None
            ended = (answered or created + 20) + rng.uniform(5, 300)
            call = Call(
                account_sid=ACCOUNT_SID,
                from_=f"+1555{rng.randrange(10**7):07d}",
                to=NUMBER if i % 2 else f"+1555{rng.randrange(10**7):07d}",
                direction="inbound" if i % 2 else "outbound-api",
                status=status,
                created=created,
                updated=ended,
                started=created,
                answered_at=answered,
                ended=ended,
                sip_response_code=200 if answered else 486,
            )
            await store.put("calls", call.to_json())
            sids.append(call.sid)
    finally:
        await store.close()
    return sids


async def run_trunkline(workdir: Path, profile_path: Path | None = None) -> None:
    """Serve until stdin closes; the first stdout line is ``{"port", "sip_port", "pid"}``.

    With ``profile_path``, the event loop thread runs under cProfile (its CPU time) and the
    statistics are dumped there at the end (``python -m pstats``)."""
    import cProfile

    from trunkline.gateway.server import Server

    server = Server(bench_config(workdir))
    await server.start()
    assert server.http_address is not None
    sip = server.sip.first("udp")
    sip_port = sip.local_address[1] if sip is not None else 0
    print(json.dumps({"port": server.http_address[1], "sip_port": sip_port, "pid": os.getpid()}), flush=True)
    # CPU time of the loop thread, not wall time: on a shared machine a wall-clock profile charges
    # whatever function was running when the OS preempted the process.
    profile = cProfile.Profile(time.thread_time) if profile_path is not None else None
    if profile is not None:
        profile.enable()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    if profile is not None:
        profile.disable()
        profile.dump_stats(str(profile_path))
    await server.stop()


# --- the reference: a bare aiohttp handler -------------------------------------------------------


def fixed_json(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (at least 12)."""
    body = json.dumps({"pad": "x" * max(0, size - 11)}).encode()
    return body[:size] if len(body) > size else body


async def run_reference() -> None:
    """Bare handlers ``GET /bytes/{size}`` (200) and ``POST /bytes/{size}`` (reads the form, 201)
    answering a fixed JSON body of ``size`` bytes; serve until stdin closes."""
    import logging

    bodies: dict[int, bytes] = {}

    def body(request: web.Request) -> bytes:
        size = int(request.match_info["size"])
        if size not in bodies:
            bodies[size] = fixed_json(size)
        return bodies[size]

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=body(request), content_type="application/json")

    async def post(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(body=body(request), status=201, content_type="application/json")

    app = web.Application()
    app.router.add_get("/bytes/{size}", get)
    app.router.add_post("/bytes/{size}", post)
    runner = web.AppRunner(app, access_log=logging.getLogger("bench.access"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# --- the client ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Step:
    """One measurement: ``concurrency`` workers send ``method`` to ``urls`` (cycled) for a while."""

    name: str
    method: str
    urls: list[str]
    expect: int
    concurrency: int
    warmup: float
    duration: float
    server_pid: int
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Result:
    """What one step measured (latencies in milliseconds, CPU as a fraction of one core)."""

    name: str
    requests: int
    errors: int
    seconds: float
    rps: float
    p50: float
    p99: float
    body_bytes: int
    server_cpu: float
    client_cpu: float
    error_sample: str = ""


async def load(step: Step) -> Result:
    """Run ``step`` and measure it (in the client process)."""
    import numpy as np
    from yarl import URL

    urls = [URL(u, encoded=True) for u in step.urls]
    data = step.body.encode() if step.body is not None else None
    latencies: list[float] = []
    sizes: list[int] = []
    errors = 0
    error_sample = ""
    clock = time.perf_counter  # uvloop's loop.time() has millisecond resolution
    start = clock()
    window_start = start + step.warmup
    window_end = window_start + step.duration
    marks: dict[str, float] = {}

    connector = aiohttp.TCPConnector(limit=step.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=step.headers) as session:

        async def worker(index: int) -> None:
            nonlocal errors, error_sample
            i = index
            while True:
                t0 = clock()
                if t0 >= window_end:
                    return
                url = urls[i % len(urls)]
                i += step.concurrency
                try:
                    async with session.request(step.method, url, data=data) as response:
                        payload = await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status, payload = -1, repr(exc).encode()
                t1 = clock()
                if t0 >= window_start and t1 <= window_end:
                    if status == step.expect:
                        latencies.append(t1 - t0)
                        sizes.append(len(payload))
                    else:
                        errors += 1
                        error_sample = error_sample or f"{status}: {payload[:200]!r}"

        async def meter() -> None:
            await asyncio.sleep(max(0.0, window_start - clock()))
            marks["cpu0"], marks["srv0"] = time.process_time(), cpu_seconds(step.server_pid)
            await asyncio.sleep(max(0.0, window_end - clock()))
            marks["cpu1"], marks["srv1"] = time.process_time(), cpu_seconds(step.server_pid)

        await asyncio.gather(meter(), *(worker(k) for k in range(step.concurrency)))
    ms = np.asarray(latencies) * 1000.0
    return Result(
        name=step.name,
        requests=len(latencies),
        errors=errors,
        seconds=step.duration,
        rps=len(latencies) / step.duration,
        p50=float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        p99=float(np.percentile(ms, 99)) if len(ms) else float("nan"),
        body_bytes=int(np.mean(sizes)) if sizes else 0,
        server_cpu=(marks["srv1"] - marks["srv0"]) / step.duration,
        client_cpu=(marks["cpu1"] - marks["cpu0"]) / step.duration,
        error_sample=error_sample,
    )


def run_client(spec_path: Path) -> None:
    """Client process: read a :class:`Step` as JSON, print its :class:`Result` as JSON."""
    step = Step(**json.loads(spec_path.read_text()))
    loop = new_loop()
    try:
        result = loop.run_until_complete(load(step))
    finally:
        loop.close()
    print(json.dumps(asdict(result)), flush=True)


# --- the orchestrator ----------------------------------------------------------------------------


class Child:
    """A role of this script in its own process; its first stdout line is a JSON hello."""

    def __init__(self, role: str, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", role, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {role} process exited at start-up (code {self.proc.wait()})")
        self.hello: dict[str, Any] = json.loads(line)

    def stop(self, timeout: float = 20.0) -> None:
        """Close its stdin (it shuts down cleanly) and wait; kill it if it hangs."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(step: Step, workdir: Path) -> Result:
    """Run one step in a fresh client process pinned to the client CPU."""
    spec = workdir / f"step-{step.name.replace(' ', '_').replace('/', '_')}.json"
    spec.write_text(json.dumps(asdict(step)))
    out = subprocess.run(
        [sys.executable, __file__, "--role", "client", "--spec", str(spec)],
        stdout=subprocess.PIPE, text=True, check=True, cwd=workdir,
    )  # fmt: skip
    result = Result(**json.loads(out.stdout.strip().splitlines()[-1]))
    note = f" ({result.errors} errors, e.g. {result.error_sample})" if result.errors else ""
    print(f"  {step.name}: {result.rps:,.0f} req/s, p50 {result.p50:.1f} ms, p99 {result.p99:.1f} ms{note}")
    return result


def auth_header() -> dict[str, str]:
    """HTTP Basic credentials of the bench account."""
    return {"Authorization": aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)}


def call_counts(database: Path, to: str) -> dict[str, int]:
    """Calls to ``to`` by status, read from the store's SQLite file (read-only)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT status, COUNT(*) FROM calls WHERE to_ = ? GROUP BY status", (to,))
        return dict(rows.fetchall())


class Uas:
    """The SIPp UAS (``uas_answer.xml``) the POSTed calls dial, pinned to the client CPU."""

    def __init__(self, workdir: Path) -> None:
        from tests.peers.sipp import Sipp, scenario

        self.sipp = Sipp(
            scenario("uas_answer"),
            workdir=workdir / "sipp",
            calls=None,
            limit=100_000,
            timeout=600,
            timeout_error=False,
            trace_msg=False,
        )
        self.port = self.sipp.local_port
        self.out = self.sipp.output_file.open("wb")
        self.proc = subprocess.Popen(
            self.sipp.command(), stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
            cwd=self.sipp.workdir,
        )  # fmt: skip
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > CLIENT_CPU:
            os.sched_setaffinity(self.proc.pid, {CLIENT_CPU})
        deadline = time.monotonic() + 5.0
        while not _udp_bound(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SIPp did not start: {self.sipp.output_file.read_text(errors='replace')}")
            time.sleep(0.02)

    def stop(self) -> int:
        """Stop SIPp; the number of calls it completed (its ``-trace_stat`` counters)."""
        from tests.peers.sipp import SippResult, parse_stat_csv

        time.sleep(1.2)  # one more -fd 1 statistics dump
        self.proc.terminate()
        code = self.proc.wait()
        self.out.close()
        stats = self.sipp.stat_file.read_text() if self.sipp.stat_file.exists() else ""
        return SippResult(code, [], Path("."), counters=parse_stat_csv(stats)).successful


def _udp_bound(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def drain(database: Path, to: str, timeout: float) -> dict[str, int]:
    """Wait until no call to ``to`` is queued, ringing or in progress (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = call_counts(database, to)
        live = sum(counts.get(s, 0) for s in ("queued", "ringing", "in-progress"))
        if live == 0 or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def table(rows: Sequence[tuple[Result, Result]]) -> str:
    """The markdown table: each Trunkline step, then its reference and the ratios.

    ``req/CPU-s`` is requests per CPU-second of the server process: on a shared machine, where the
    server may not get a whole core, it is the steadier figure of cost.
    """
    lines = [
        "| step | req/s | p50 ms | p99 ms | errors | body B | server CPU | client CPU | req/CPU-s "
        "| ratio req/s | ratio req/CPU-s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def per_cpu(result: Result) -> float:
        return result.rps / result.server_cpu if result.server_cpu > 0 else float("nan")

    def row(result: Result, ratios: str) -> str:
        return (
            f"| {result.name} | {result.rps:,.0f} | {result.p50:.1f} | {result.p99:.1f} | {result.errors} "
            f"| {result.body_bytes:,} | {result.server_cpu:.0%} | {result.client_cpu:.0%} "
            f"| {per_cpu(result):,.0f} | {ratios} |"
        )

    for result, ref in rows:
        by_rate = f"**{result.rps / ref.rps:.2f}**" if ref.rps else "-"
        lines.append(row(result, f"{by_rate} | {per_cpu(result) / per_cpu(ref):.2f}"))
        lines.append(row(ref, "1 | 1"))
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> None:
    """Seed, start Trunkline and the reference, measure each step beside its reference; print."""
    pin(CLIENT_CPU)
    began = time.monotonic()
    deep_page = args.records * 9 // 10 // 50
    with tempfile.TemporaryDirectory(prefix="api-load-") as tmp:
        workdir = Path(tmp)
        database = workdir / "var" / "trunkline.db"
        database.parent.mkdir(parents=True)
        sids = asyncio.run(seed(database, args.records))
        print(f"seeded {len(sids):,} calls in {time.monotonic() - began:.1f} s", flush=True)

        def step(name: str, method: str, url: str | list[str], pid: int, **kw: Any) -> Step:
            urls = [url] if isinstance(url, str) else url
            return Step(
                name, method, urls, kw.pop("expect", 200), args.concurrency, args.warmup, args.duration,
                pid, **kw,
            )  # fmt: skip

        profile = ["--profile", str(args.profile.resolve())] if args.profile else []
        server = Child("trunkline", "--dir", str(workdir), *profile, cwd=workdir)
        reference = Child("reference", cwd=workdir)
        pairs: list[tuple[Result, Result]] = []
        uas: Uas | None = None
        created = ""
        try:
            base = f"http://127.0.0.1:{server.hello['port']}{API}/Accounts/{ACCOUNT_SID}"
            pid = int(server.hello["pid"])
            ref_base = f"http://127.0.0.1:{reference.hello['port']}"
            ref_pid = int(reference.hello["pid"])
            headers = auth_header()

            def against_reference(result: Result, method: str, **kw: Any) -> Result:
                size = result.body_bytes
                name = f"reference: bare aiohttp {method}, {size:,} B"
                return measure(step(name, method, f"{ref_base}/bytes/{size}", ref_pid, **kw), workdir)

            first = f"{base}/Calls.json?PageSize=50"
            deep = f"{base}/Calls.json?{urlencode({'PageSize': 50, 'Page': deep_page})}"
            fetch = [f"{base}/Calls/{sid}.json" for sid in sids[-2000:]]
            for key, name, urls in (
                ("list", "GET Calls.json?PageSize=50", first),
                ("deep", f"GET Calls.json?PageSize=50&Page={deep_page}", deep),
                ("fetch", "GET Calls/{sid}.json", fetch),
            ):
                if key not in args.steps:
                    continue
                result = measure(step(name, "GET", urls, pid, headers=headers), workdir)
                pairs.append((result, against_reference(result, "GET")))

            if "create" in args.steps:
                uas = None if args.no_sipp else Uas(workdir)
                to = f"sip:bench@127.0.0.1:{uas.port if uas is not None else args.refusing_port}"
                form = urlencode({"To": to, "From": NUMBER, "Twiml": TWIML_HANGUP})
                form_type = {"Content-Type": "application/x-www-form-urlencoded"}
                name = "POST Calls.json (Twiml Hangup)"
                result = measure(
                    step(name, "POST", f"{base}/Calls.json", pid, body=form,
                         headers={**headers, **form_type}, expect=201),
                    workdir,
                )  # fmt: skip
                drained = time.monotonic()
                drain(database, to, args.drain)
                drained = time.monotonic() - drained
                ref = against_reference(result, "POST", body=form, headers=form_type, expect=201)
                pairs.append((result, ref))
        finally:
            server.stop()
            reference.stop()
            sipp_calls = uas.stop() if uas is not None else None
        if "create" in args.steps:
            counts = call_counts(database, to)
            created = (
                f"POST Calls.json: {sum(counts.values()):,} calls created (incl. warm-up), "
                f"{drained:.1f} s to drain; by final status {counts}; "
                f"SIPp UAS completed {sipp_calls if sipp_calls is not None else '-'} calls."
            )

    elapsed = time.monotonic() - began
    print()
    print(f"`{' '.join(['.venv/bin/python', 'bench/api_load.py', *sys.argv[1:]])}`")
    print()
    print(
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, uvloop on both sides; "
        f"servers on CPU {SERVER_CPU}, client (+SIPp) on CPU {CLIENT_CPU}; {args.records:,} seeded calls; "
        f"{args.concurrency} requests in flight, {args.duration:g} s per step "
        f"after {args.warmup:g} s warm-up; run took {elapsed:.0f} s."
    )
    print()
    print(table(pairs))
    if created:
        print()
        print(created)
    if args.profile:
        print(f"\nServer profile (event loop thread, whole run): {args.profile}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--role", choices=("bench", "trunkline", "reference", "client"), default="bench")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each step")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--records", type=int, default=5000, help="call records seeded in the store")
    parser.add_argument("--drain", type=float, default=10.0, help="max seconds to let POSTed calls end")
    parser.add_argument("--no-sipp", action="store_true", help="POST calls to --refusing-port instead")
    parser.add_argument("--refusing-port", type=int, default=9, help="UDP port nobody listens on")
    parser.add_argument(
        "--steps",
        type=lambda text: set(text.split(",")),
        default={"list", "deep", "fetch", "create"},
        help="comma-separated subset of list,deep,fetch,create (default: all)",
    )
    parser.add_argument("--profile", type=Path, help="cProfile the Trunkline server into this file")
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "bench":
        orchestrate(args)
        return
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.role == "client":
        pin(CLIENT_CPU)
        run_client(args.spec)
        return
    pin(SERVER_CPU)
    loop = new_loop()
    try:
        if args.role == "trunkline":
            loop.run_until_complete(run_trunkline(args.dir, args.profile))
        else:
            loop.run_until_complete(run_reference())
    finally:
        loop.close()


if __name__ == "__main__":
    main()
