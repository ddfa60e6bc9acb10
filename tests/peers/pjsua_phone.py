"""A pjsua2 soft phone in its own process, driven by line-based JSON over stdin/stdout.

pjsua2 is a C library with its own threads; inside pytest/asyncio it is fragile, so every phone
runs as ``python -m tests.peers.pjsua_process`` and the test process talks to it through
:class:`PjsuaPhone` (this module never imports pjsua2).  The phone uses the null audio
device, no VAD, no echo canceller, a UDP transport and RTP bound to 127.0.0.1, no STUN/ICE,
PCMU then PCMA (other codecs off), telephone-event for RFC 2833/4733 DTMF, ``threadCnt=0`` and
``mainThreadOnly`` (pjsua's callbacks run in the phone's own polling loop).

Usage (async; pytest-asyncio is in auto mode)::

    from tests.peers.pjsua_phone import PjsuaPhone

    async with PjsuaPhone(workdir=tmp_path, name="alice") as alice, \\
               PjsuaPhone(workdir=tmp_path, name="bob") as bob:
        call = await alice.call(bob.uri, headers={"X-Test": "1"})
        incoming = await bob.wait_for("incoming_call")
        await bob.answer(call=incoming["call"])
        await alice.wait_for("media_active", call=call)
        await alice.send_dtmf("123#", method="rfc2833")
        digit = await bob.wait_for("dtmf_received")          # {"digit": "1", "method": ...}
        await alice.play_wav(tone_wav)                        # to the call's audio
        await bob.record_to(tmp_path / "bob.wav")             # stop_record() or hangup closes it
        await alice.hangup()
        await bob.wait_for("call_state", state="DISCONNECTED")

Commands (methods of :class:`PjsuaPhone`): ``register``, ``call``, ``answer``, ``hangup``,
``hold``, ``send_dtmf``, ``play_wav``, ``record_to``, ``stop_record``, ``send_message``,
``quit``.  Calls are numbered by pjsua's call id; ``call=None`` means the most recent call.
Events (dicts with an ``"event"`` key): ``ready``, ``incoming_call`` (call, remote_uri,
local_uri, request - the INVITE's text), ``call_state`` (call, state: CALLING, INCOMING, EARLY,
CONNECTING, CONFIRMED, DISCONNECTED; code, reason), ``media_active`` (call, codec, status),
``media_state`` (call, status: local_hold, remote_hold, none, error), ``dtmf_received`` (call,
digit, method: rfc2833/info), ``message_received`` (from, to,
content_type, text), ``message_status`` (code, reason), ``reg_state`` (code, reason,
expiration), ``play_done`` (call).  :meth:`PjsuaPhone.wait_for` returns the first matching event
not returned before, including events that arrived before the call, so there is no race.
pjsua reuses call numbers once a call is over: to tell successive calls apart, match on
``call_id`` (the SIP Call-ID), which ``incoming_call`` and ``call_state`` carry.

An incoming call is answered 180 Ringing automatically (``auto_answer=200`` answers it right
away, ``auto_answer=None`` leaves it in INCOMING).  The phone's pjsua log goes to
``<workdir>/<name>-<port>.log``; failures quote its tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.peers.ports import free_port_pair, free_udp_port

LOOPBACK = "127.0.0.1"
Event = dict[str, Any]


class PhoneError(RuntimeError):
    """A phone command failed or an expected event did not come in time."""


class PjsuaPhone:
    """Spawns one phone process and talks to it; always kills the process on close."""

    def __init__(
        self,
        *,
        name: str = "phone",
        port: int | None = None,
        rtp_port: int | None = None,
        workdir: Path | None = None,
        auto_answer: int | None = 180,
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
        log_level: int = 4,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.port = port or free_udp_port()
        self.rtp_port = rtp_port or free_port_pair()[0]
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="pjsua-")
        self.workdir = Path(workdir) if workdir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.auto_answer = auto_answer
        self.codecs = codecs
        self.log_level = log_level
        self.timeout = timeout
        self.log_file = self.workdir / f"{name}-{self.port}.log"
        self.events: list[Event] = []
        self._consumed: set[int] = set()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._recordings: dict[int, Path] = {}
        self._next_id = 0
        self._changed: asyncio.Condition | None = None
        self._log: Any = None

    @property
    def uri(self) -> str:
        """SIP URI that reaches this phone directly."""
        return f"sip:{self.name}@{LOOPBACK}:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the phone's pjsua log, for assertion messages."""
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # --- process lifecycle ----------------------------------------------------------------------

    async def start(self) -> Self:
        """Spawn the phone and wait for its ``ready`` event."""
        self._changed = asyncio.Condition()
        self._log = self.log_file.open("wb")
        argv = [
            sys.executable,
            "-m",
            "tests.peers.pjsua_process",
            "--name",
            self.name,
            "--port",
            str(self.port),
            "--rtp-port",
            str(self.rtp_port),
            "--codecs",
            ",".join(self.codecs),
            "--log-level",
            str(self.log_level),
        ]
        if self.auto_answer is not None:
            argv += ["--auto-answer", str(self.auto_answer)]
        root = Path(__file__).resolve().parents[2]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=root,
            env=env,
            limit=1 << 20,
        )
        self._reader = asyncio.create_task(self._read_loop())
        try:
            await self.wait_for("ready", timeout=self.timeout)
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Ask the phone to quit; kill it if it does not exit within 3 s."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.write(b'{"id": -1, "cmd": "quit", "args": {}}\n')
                await proc.stdin.drain()
            try:
                await asyncio.wait_for(proc.wait(), 3.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(PhoneError(f"{self.name}: phone exited"))
        self._pending.clear()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._proc = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _read_loop(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        assert self._changed is not None
        try:
            async for raw in self._proc.stdout:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if "event" in msg:
                    async with self._changed:
                        self.events.append(msg)
                        self._changed.notify_all()
                elif "id" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        if msg.get("ok"):
                            fut.set_result(msg.get("result"))
                        else:
                            fut.set_exception(PhoneError(f"{self.name}: {msg.get('error')}"))
        finally:
            async with self._changed:
                self.events.append({"event": "exited"})
                self._changed.notify_all()

    # --- protocol ------------------------------------------------------------------------------

    async def request(self, cmd: str, **args: Any) -> Any:
        """Send one command and return its result (raises :class:`PhoneError` on failure)."""
        if self._proc is None or self._proc.stdin is None:
            raise PhoneError(f"{self.name}: not started")
        self._next_id += 1
        ident = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        line = json.dumps({"id": ident, "cmd": cmd, "args": args}) + "\n"
        self._proc.stdin.write(line.encode())
        await self._proc.stdin.drain()
        try:
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise PhoneError(
                f"{self.name}: no reply to {cmd} within {self.timeout} s\n{self.log_tail()}"
            ) from None

    async def wait_for(
        self,
        event: str,
        timeout: float | None = None,
        predicate: Callable[[Event], bool] | None = None,
        **match: Any,
    ) -> Event:
        """The first not-yet-returned event named ``event`` whose fields equal ``match``."""
        assert self._changed is not None
        limit = self.timeout if timeout is None else timeout

        def find() -> Event | None:
            for i, ev in enumerate(self.events):
                if i in self._consumed or ev.get("event") != event:
                    continue
                if all(ev.get(k) == v for k, v in match.items()) and (predicate is None or predicate(ev)):
                    self._consumed.add(i)
                    return ev
            return None

        async def waiter() -> Event:
            assert self._changed is not None
            async with self._changed:
                while True:
                    found = find()
                    if found is not None:
                        return found
                    if self.events and self.events[-1].get("event") == "exited" and event != "exited":
                        raise PhoneError(f"{self.name}: phone exited while waiting for {event}")
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(waiter(), limit)
        except TimeoutError:
            seen = [e for e in self.events if e.get("event") == event]
            raise PhoneError(
                f"{self.name}: no {event} {match or ''} within {limit} s (seen: {seen})\n{self.log_tail()}"
            ) from None

    # --- commands -------------------------------------------------------------------------------

    async def register(
        self, registrar: str, user: str, password: str, *, realm: str = "*", wait: bool = True
    ) -> Event | None:
        """Register ``user`` at ``registrar`` (``host:port``); wait for the final ``reg_state``."""
        await self.request("register", registrar=registrar, user=user, password=password, realm=realm)
        if not wait:
            return None
        return await self.wait_for("reg_state", predicate=lambda e: int(e["code"]) >= 200)

    async def call(self, uri: str, headers: dict[str, str] | None = None) -> int:
        """Start a call to ``uri`` with extra SIP headers; returns the call id."""
        result: int = await self.request("call", uri=uri, headers=headers or {})
        return result

    async def answer(self, code: int = 200, call: int | None = None) -> None:
        await self.request("answer", code=code, call=call)

    async def hangup(self, code: int | None = None, call: int | None = None) -> None:
        await self.request("hangup", code=code, call=call)

    async def hold(self, call: int | None = None, *, resume: bool = False) -> None:
        """Put the call on hold (re-INVITE a=sendonly) or resume it (a=sendrecv)."""
        await self.request("hold", call=call, resume=resume)

    async def send_dtmf(self, digits: str, method: str = "rfc2833", call: int | None = None) -> None:
        """Send digits as RFC 2833/4733 events (``rfc2833``) or SIP INFO (``info``)."""
        await self.request("send_dtmf", digits=digits, method=method, call=call)

    async def play_wav(self, path: str | Path, call: int | None = None) -> None:
        """Play a WAV file into the call once (``play_done`` fires at its end)."""
        await self.request("play_wav", path=str(path), call=call)

    async def record_to(self, path: str | Path, call: int | None = None) -> None:
        """Record what the phone hears from the call into a WAV file (8 kHz mono).

        The recording ends with :meth:`stop_record` or when the call is disconnected; then use
        :meth:`finished_wav` before reading the file.
        """
        result = await self.request("record_to", path=str(path), call=call)
        self._recordings[result] = Path(path)

    async def stop_record(self, call: int | None = None) -> Path:
        """Close the recording and wait until its WAV file is complete; returns its path."""
        ident = await self.request("stop_record", call=call)
        return await self.finished_wav(self._recordings[ident])

    async def finished_wav(self, path: str | Path, timeout: float = 3.0) -> Path:
        """Wait until pjsua has closed the WAV file at ``path`` (its RIFF size matches the file).

        pjsua's conference bridge removes a recorder on its next clock tick, so the header is
        rewritten a few milliseconds after the recorder is destroyed.
        """
        target = Path(path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with contextlib.suppress(OSError):
                data = target.read_bytes()
                if len(data) >= 44 and int.from_bytes(data[4:8], "little") == len(data) - 8:
                    return target
            if loop.time() > deadline:
                raise PhoneError(f"{self.name}: WAV {target} not finalised within {timeout} s")
            await asyncio.sleep(0.02)

    async def send_message(self, uri: str, text: str, content_type: str = "text/plain") -> None:
        """Send a SIP MESSAGE (RFC 3428); the outcome arrives as ``message_status``."""
        await self.request("send_message", uri=uri, text=text, content_type=content_type)
