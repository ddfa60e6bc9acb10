"""Run the Debian ``sipp`` binary (v3.6.1, PCAP play) headless on 127.0.0.1 and parse its result.

SIPp needs no terminal when it runs with ``-nostdin`` and stdin from /dev/null; its screen output
goes to a file in the run's work directory.  ``-bg`` is not used: it forks, so the exit code and
the final statistics would be lost.  Every run is bounded: ``-m`` calls, a global ``-timeout``
(SIPp exits by itself) and a hard timeout a few seconds later (the harness kills it).

Typical e2e use (async; pytest-asyncio runs in auto mode)::

    from tests.peers.sipp import Sipp, scenario

    async def test_gateway_answers(tmp_path, gateway_port):
        uac = Sipp(scenario("uac_pcap_g711a"), remote=f"127.0.0.1:{gateway_port}",
                   workdir=tmp_path, service="+15551230000", calls=1, timeout=15)
        result = await uac.run()                 # or uac.run_sync()
        result.check(calls=1)                    # raises SippFailure with SIPp's error log
        assert result.successful == 1 and result.retransmissions == 0

A server peer runs in the background while the system under test calls it::

    async with Sipp(scenario("uas_answer"), workdir=tmp_path, timeout=10, rtp_echo=True) as uas:
        ...  # make the gateway dial f"sip:test@127.0.0.1:{uas.local_port}"; SDP media on uas.media_port
    uas.result.check(calls=1)                     # __aexit__ waited for SIPp (killed it on error)

(SIPp's built-in ``uas`` ends every call with a 4 s timewait; ``scenarios/uas_answer.xml`` uses
200 ms, handles re-INVITE/INFO and is the better default.)

``scenario`` is a built-in name (``uac``, ``uas``, ``regexp``, ``branchc``, ...; run with
``-sn``) or a path to an XML file (``-sf``); :func:`scenario` resolves the files of
``tests/peers/scenarios``.  Exit codes (``sipp -h``): 0 all calls succeeded, 1 at least one
failed, 97 exit on internal command, 99 normal exit without calls processed, 255/254 (-1/-2)
fatal error / cannot bind.  :class:`SippResult` holds them with the ``-trace_stat`` counters and
the per-message table of the final screen (``-trace_screen``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.peers.ports import free_port_block, free_udp_port

SIPP_BINARY = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIO_DIR = Path(__file__).parent / "scenarios"
PCAP_DIR = Path("/usr/share/sip-tester")
LOOPBACK = "127.0.0.1"

BUILTIN_SCENARIOS = frozenset(
    {"uac", "uas", "regexp", "branchc", "branchs", "uac_pcap", "3pcc-C-A", "3pcc-C-B", "3pcc-A", "3pcc-B"}
)

EXIT_ALL_OK = 0
EXIT_SOME_FAILED = 1
EXIT_INTERNAL_COMMAND = 97
EXIT_NO_CALLS = 99
EXIT_FATAL = 255
EXIT_BIND_FAILED = 254
# The harness's own code when it had to kill SIPp (like timeout(1)).
EXIT_KILLED = 124


def scenario(name: str) -> Path:
    """Path of ``tests/peers/scenarios/<name>.xml``; raises FileNotFoundError if absent."""
    path = SCENARIO_DIR / (name if name.endswith(".xml") else f"{name}.xml")
    if not path.is_file():
        raise FileNotFoundError(f"no SIPp scenario {path}")
    return path


def derive_scenario(base: str | Path, workdir: Path, replacements: dict[str, str], name: str = "") -> Path:
    """Write a copy of scenario ``base`` (name or path) into ``workdir`` with text replaced.

    Every key must occur in the scenario (a typo raises ValueError).  Example: a 2-second tone
    instead of g711a.pcap::

        write_tone_pcap(tmp_path / "tone.pcap", 1000.0, seconds=2.0, codec="PCMA")
        path = derive_scenario("uac_pcap_g711a", tmp_path, {
            "/usr/share/sip-tester/g711a.pcap": str(tmp_path / "tone.pcap"),
            'pause milliseconds="7300"': 'pause milliseconds="2200"'})
    """
    source = Path(base) if str(base).endswith(".xml") else scenario(str(base))
    text = source.read_text(encoding="iso-8859-1")
    for old, new in replacements.items():
        if old not in text:
            raise ValueError(f"{old!r} does not occur in {source}")
        text = text.replace(old, new)
    target = Path(workdir) / f"{name or source.stem + '_derived'}.xml"
    target.write_text(text, encoding="iso-8859-1")
    return target


DTMF_PCAPS = {d: PCAP_DIR / f"dtmf_2833_{d}.pcap" for d in "0123456789"} | {
    "*": PCAP_DIR / "dtmf_2833_star.pcap",
    "#": PCAP_DIR / "dtmf_2833_pound.pcap",
}


def dtmf_2833_scenario(workdir: Path, digits: str, gap_ms: int = 400) -> Path:
    """``uac_dtmf_2833`` playing SIPp's RFC 2833 pcap of each of ``digits`` (0-9, *, #) in turn."""
    text = scenario("uac_dtmf_2833").read_text(encoding="iso-8859-1")
    head, rest = text.split("<!-- dtmf-begin -->", 1)
    block, tail = rest.split("<!-- dtmf-end -->", 1)
    blocks = []
    for digit in digits:
        if digit not in DTMF_PCAPS:
            raise ValueError(f"SIPp ships no RFC 2833 pcap for digit {digit!r}")
        blocks.append(
            block.replace(str(DTMF_PCAPS["1"]), str(DTMF_PCAPS[digit])).replace(
                'pause milliseconds="400"', f'pause milliseconds="{gap_ms}"'
            )
        )
    target = Path(workdir) / f"uac_dtmf_2833_{len(digits)}digits.xml"
    target.write_text(head + "".join(blocks) + tail, encoding="iso-8859-1")
    return target


class SippFailure(AssertionError):
    """A SIPp run did not end as the test expected; the message carries SIPp's own logs."""


@dataclass(slots=True, frozen=True)
class MessageRow:
    """One line of SIPp's scenario screen: a message or a pause with its counters."""

    label: str
    direction: str  # "send", "recv" or "" (pause, nop, label)
    messages: int
    retrans: int
    timeouts: int
    unexpected: int


@dataclass(slots=True)
class SippResult:
    """The outcome of one SIPp run."""

    returncode: int
    command: list[str]
    workdir: Path
    timed_out: bool = False
    counters: dict[str, str] = field(default_factory=dict)
    rows: list[MessageRow] = field(default_factory=list)
    output: str = ""
    errors: str = ""

    def _int(self, name: str) -> int:
        value = self.counters.get(f"{name}(C)", "0") or "0"
        try:
            return int(float(value))
        except ValueError:
            return 0

    @property
    def successful(self) -> int:
        return self._int("SuccessfulCall")

    @property
    def failed(self) -> int:
        return self._int("FailedCall")

    @property
    def created(self) -> int:
        value = self.counters.get("TotalCallCreated", "0") or "0"
        return int(value) if value.isdigit() else 0

    @property
    def retransmissions(self) -> int:
        return self._int("Retransmissions")

    @property
    def unexpected(self) -> int:
        return self._int("FailedUnexpectedMessage")

    @property
    def recv_timeouts(self) -> int:
        return self._int("FailedTimeoutOnRecv")

    @property
    def max_retrans_failures(self) -> int:
        return self._int("FailedMaxUDPRetrans")

    @property
    def out_of_call(self) -> int:
        return self._int("OutOfCallMsgs")

    @property
    def dead_call(self) -> int:
        return self._int("DeadCallMsgs")

    @property
    def ok(self) -> bool:
        """Exit code 0, no failed call and at least one successful one."""
        return self.returncode == EXIT_ALL_OK and self.failed == 0 and self.successful > 0

    def row(self, label: str, index: int = 0, direction: str | None = None) -> MessageRow:
        """The ``index``-th screen row labelled ``label`` (``"BYE"``, ``"487"``), optionally by direction."""
        matches = [
            r for r in self.rows if r.label == label and (direction is None or r.direction == direction)
        ]
        if len(matches) <= index:
            raise KeyError(f"no screen row {label!r} #{index} in {[r.label for r in self.rows]}")
        return matches[index]

    def describe(self) -> str:
        """A multi-line summary with SIPp's output and error log, for assertion messages."""
        parts = [
            f"sipp exit {self.returncode}{' (killed after hard timeout)' if self.timed_out else ''}: "
            f"{self.successful} successful, {self.failed} failed, {self.retransmissions} retransmissions, "
            f"{self.unexpected} unexpected",
            "command: " + " ".join(self.command),
        ]
        if self.errors:
            parts.append("error log:\n" + self.errors[-4000:])
        if self.output:
            parts.append("screen:\n" + self.output[-3000:])
        return "\n".join(parts)

    def check(self, calls: int | None = None, *, retransmissions: int | None = None) -> Self:
        """Raise :class:`SippFailure` unless the run succeeded (with exactly ``calls`` calls)."""
        if not self.ok or (calls is not None and self.successful != calls):
            raise SippFailure(self.describe())
        if retransmissions is not None and self.retransmissions != retransmissions:
            raise SippFailure(f"expected {retransmissions} retransmissions\n{self.describe()}")
        return self


def parse_stat_csv(text: str) -> dict[str, str]:
    """The last row of a ``-trace_stat`` CSV (cumulative values) as a name -> value mapping."""
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=";") if r]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


def parse_screen(text: str) -> list[MessageRow]:
    """The message table of the last scenario screen in a ``-trace_screen`` dump.

    Rows look like ``INVITE ---------->  3  0  0`` (sent, UAC side), ``----------> INVITE  3 ...``
    (received, UAS side), ``180 <----------`` (received), ``<---------- 180`` (sent) or
    ``Pause [ 0ms]  3  0``.
    """
    start = text.rfind("Scenario Screen")
    if start < 0:
        return []
    lines = text[start:].splitlines()
    try:
        first = next(i for i, line in enumerate(lines) if "Messages" in line and "Retrans" in line)
    except StopIteration:
        return []
    rows = []
    for line in lines[first + 1 :]:
        if line.startswith("-----"):
            break
        tokens = [t for t in line.split() if not re.fullmatch(r"[EB]-RTD\d+", t)]
        arrows = [i for i, t in enumerate(tokens[:2]) if re.fullmatch(r"-+>|<-+", t)]
        direction = ""
        if arrows and len(tokens) >= 3:
            i = arrows[0]
            label, arrow, rest = tokens[1 - i], tokens[i], tokens[2:]
            sent = arrow.endswith(">") == (i == 1)  # "INVITE --->" or "<--- 180" is sent
            direction = "send" if sent else "recv"
        else:
            rest = []
            while tokens and tokens[-1].isdigit():
                rest.insert(0, tokens.pop())
            label = " ".join(tokens)
        if not label or not rest or not all(t.isdigit() for t in rest):
            continue
        nums = [int(t) for t in rest]
        nums += [0, 0, 0]
        rows.append(MessageRow(label, direction, nums[0], nums[1], nums[2], nums[3]))
    return rows


def _udp_port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


@dataclass(slots=True)
class Sipp:
    """One SIPp process; build with keyword arguments, then :meth:`run`/:meth:`run_sync`/``async with``.

    ``remote`` is ``host:port`` of the peer (omit for a server scenario).  Ports left at 0 are
    chosen free on 127.0.0.1 (read them back from the attributes after construction).
    """

    scenario: str | Path
    remote: str | None = None
    workdir: Path | None = None
    local_ip: str = LOOPBACK
    local_port: int = 0
    calls: int | None = 1
    rate: float | None = None
    rate_period_ms: int | None = None
    limit: int | None = None
    timeout: float = 20.0
    timeout_error: bool = True
    recv_timeout_ms: int | None = None
    service: str | None = None
    auth_user: str | None = None
    auth_password: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    keywords: dict[str, str] = field(default_factory=dict)
    inf: Path | None = None
    rtp_echo: bool = False
    media_ip: str = LOOPBACK
    media_port: int = 0
    trace_msg: bool = True
    trace_err: bool = True
    transport: str = "u1"
    call_duration_ms: int | None = None
    extra_args: list[str] = field(default_factory=list)
    kill_grace: float = 5.0
    kill_after: float | None = None
    result: SippResult | None = None
    command_line: list[str] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _out: io.BufferedWriter | None = None

    def __post_init__(self) -> None:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sipp-")
            self.workdir = Path(self._tmp.name)
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.local_port:
            self.local_port = free_udp_port()
        if not self.media_port:
            self.media_port = free_port_block(4)[0]  # SIPp binds -mp .. -mp+3 (audio, video)

    # --- command line ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Base name of this run's files in ``workdir`` (scenario name + SIP port)."""
        return f"{Path(str(self.scenario)).stem}-{self.local_port}"

    def _file(self, suffix: str) -> Path:
        assert self.workdir is not None
        return self.workdir / f"{self.name}{suffix}"

    @property
    def stat_file(self) -> Path:
        return self._file(".stat.csv")

    @property
    def screen_file(self) -> Path:
        return self._file(".screen.log")

    @property
    def error_file(self) -> Path:
        return self._file(".errors.log")

    @property
    def message_file(self) -> Path:
        return self._file(".messages.log")

    @property
    def output_file(self) -> Path:
        return self._file(".out")

    def command(self) -> list[str]:
        """The full SIPp command line."""
        sc = str(self.scenario)
        is_file = sc.endswith(".xml") or "/" in sc
        if not is_file and sc not in BUILTIN_SCENARIOS:
            raise ValueError(f"{sc!r} is neither a built-in SIPp scenario nor an XML file")
        cmd = [SIPP_BINARY]
        if self.remote:
            cmd.append(self.remote)
        cmd += ["-sf", sc] if is_file else ["-sn", sc]
        cmd += ["-i", self.local_ip, "-p", str(self.local_port), "-t", self.transport]
        cmd += ["-mi", self.media_ip, "-mp", str(self.media_port)]
        # The control socket (default UDP 8888) also stays on loopback, on a free port.
        cmd += ["-ci", LOOPBACK, "-cp", str(free_udp_port())]
        if self.calls is not None:
            cmd += ["-m", str(self.calls)]
        if self.rate is not None:
            cmd += ["-r", f"{self.rate:g}"]
        if self.rate_period_ms is not None:
            cmd += ["-rp", str(self.rate_period_ms)]
        if self.limit is not None:
            cmd += ["-l", str(self.limit)]
        cmd += ["-timeout", f"{self.timeout:g}s"]
        if self.timeout_error:
            cmd.append("-timeout_error")
        if self.recv_timeout_ms is not None:
            cmd += ["-recv_timeout", str(self.recv_timeout_ms)]
        if self.call_duration_ms is not None:
            cmd += ["-d", str(self.call_duration_ms)]
        if self.service is not None:
            cmd += ["-s", self.service]
        if self.auth_user is not None:
            cmd += ["-au", self.auth_user]
        if self.auth_password is not None:
            cmd += ["-ap", self.auth_password]
        for key, value in self.variables.items():
            cmd += ["-set", key, value]
        for key, value in self.keywords.items():
            cmd += ["-key", key, value]
        if self.inf is not None:
            cmd += ["-inf", str(self.inf)]
        if self.rtp_echo:
            cmd.append("-rtp_echo")
        cmd += ["-trace_stat", "-stf", str(self.stat_file), "-fd", "1"]
        cmd += ["-trace_screen", "-screen_file", str(self.screen_file)]
        if self.trace_err:
            cmd += ["-trace_err", "-error_file", str(self.error_file)]
        if self.trace_msg:
            cmd += ["-trace_msg", "-message_file", str(self.message_file)]
        cmd.append("-nostdin")
        cmd += self.extra_args
        return cmd

    # --- running --------------------------------------------------------------------------------

    def _collect(self, returncode: int, timed_out: bool) -> SippResult:
        def read(path: Path) -> str:
            return path.read_text(errors="replace") if path.exists() else ""

        screen = read(self.screen_file)
        result = SippResult(
            returncode=EXIT_KILLED if timed_out else returncode & 0xFF,
            command=self.command_line,
            workdir=Path(str(self.workdir)),
            timed_out=timed_out,
            counters=parse_stat_csv(read(self.stat_file)),
            rows=parse_screen(screen or read(self.output_file)),
            output=screen or read(self.output_file),
            errors=read(self.error_file),
        )
        self.result = result
        return result

    @property
    def messages(self) -> str:
        """The ``-trace_msg`` log (all SIP messages sent and received) so far."""
        return self.message_file.read_text(errors="replace") if self.message_file.exists() else ""

    @property
    def hard_timeout(self) -> float:
        """Seconds after which the harness kills SIPp: ``kill_after`` or ``timeout + kill_grace``."""
        return self.kill_after if self.kill_after is not None else self.timeout + self.kill_grace

    def run_sync(self) -> SippResult:
        """Run to completion in the calling thread; kill SIPp if it outlives :attr:`hard_timeout`."""
        self.command_line = self.command()
        with self.output_file.open("wb") as out:
            proc = subprocess.Popen(
                self.command_line,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
            try:
                code = proc.wait(self.hard_timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
                timed_out = True
        return self._collect(code, timed_out)

    async def start(self) -> None:
        """Start SIPp in the background (returns once the process exists)."""
        if self._proc is not None:
            raise RuntimeError("this Sipp is already started")
        self.command_line = self.command()
        self._out = self.output_file.open("wb")
        self._proc = await asyncio.create_subprocess_exec(
            *self.command_line,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._out,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir,
        )

    async def ready(self, timeout: float = 5.0) -> None:
        """Wait until SIPp's SIP socket is bound (or SIPp has already exited)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._proc is not None and self._proc.returncode is not None:
                code = self._proc.returncode
                if self._out is not None:
                    self._out.close()
                    self._out = None
                raise SippFailure(f"SIPp exited at start-up\n{self._collect(code, False).describe()}")
            if _udp_port_taken(self.local_ip, self.local_port):
                return
            await asyncio.sleep(0.02)
        raise SippFailure(f"SIPp did not bind {self.local_ip}:{self.local_port} within {timeout} s")

    async def wait(self) -> SippResult:
        """Wait for SIPp to end (killing it after :attr:`hard_timeout`) and return its result."""
        if self._proc is None:
            raise RuntimeError("start() was not called")
        timed_out = False
        try:
            code = await asyncio.wait_for(self._proc.wait(), self.hard_timeout)
        except TimeoutError:
            timed_out = True
            code = await self._kill()
        finally:
            if self._out is not None:
                self._out.close()
                self._out = None
        return self._collect(code, timed_out)

    async def _kill(self) -> int:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        return await self._proc.wait()

    async def stop(self) -> SippResult:
        """Kill SIPp now (if still running) and collect what it wrote."""
        if self._proc is None:
            raise RuntimeError("start() was not called")
        killed = self._proc.returncode is None
        code = await self._kill()
        if self._out is not None:
            self._out.close()
            self._out = None
        return self._collect(code, killed)

    async def run(self) -> SippResult:
        """Start and wait: the whole run, asynchronously."""
        await self.start()
        return await self.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        await self.ready()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            await self.wait()
        else:
            await self.stop()
