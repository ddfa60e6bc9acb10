"""The pjsua2 phone process behind :class:`tests.peers.pjsua_phone.PjsuaPhone`.

Run as ``python -m tests.peers.pjsua_process --port N [--name alice] [--auto-answer 180]``.
Protocol: one JSON object per line.  Commands on stdin, ``{"id": 1, "cmd": "call", "args":
{"uri": ..., "headers": {...}}}``; replies on stdout, ``{"id": 1, "ok": true, "result": 0}`` or
``{"id": 1, "ok": false, "error": "..."}``; events on stdout, ``{"event": "call_state", "time":
..., ...}``.  The real stdout is kept for the protocol and fd 1 is pointed at stderr, so pjsua's
console log cannot corrupt it.  EOF on stdin quits the phone (the test process is gone).

pjsua runs with ``threadCnt=0`` and ``mainThreadOnly``: its callbacks run inside
``libHandleEvents`` in this process's single polling loop, which also executes the commands that
a reader thread queues from stdin (the reader never calls pjsua).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

LOOPBACK = "127.0.0.1"
Event = dict[str, Any]


class PhoneError(RuntimeError):
    """A command cannot be carried out (reported to the client as an error reply)."""


_STATE_NAMES = {
    0: "NULL",
    1: "CALLING",
    2: "INCOMING",
    3: "EARLY",
    4: "CONNECTING",
    5: "CONFIRMED",
    6: "DISCONNECTED",
}


def _phone_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="pjsua2 test phone (JSON lines on stdin/stdout)")
    parser.add_argument("--name", default="phone")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rtp-port", type=int, default=40000)
    parser.add_argument("--codecs", default="PCMU,PCMA")
    parser.add_argument("--log-level", type=int, default=4)
    parser.add_argument("--auto-answer", type=int, default=None)
    opts = parser.parse_args(argv)

    # The protocol owns the real stdout; pjsua's console output goes to stderr (the log file).
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    out_lock = threading.Lock()

    def emit(obj: Event) -> None:
        with out_lock:
            proto.write(json.dumps(obj) + "\n")

    def event(name: str, **fields: Any) -> None:
        emit({"event": name, "time": time.time(), **fields})

    import pjsua2 as pj

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.userAgent = f"trunkline-test-pjsua/{opts.name}"
    cfg.logConfig.level = opts.log_level
    cfg.logConfig.consoleLevel = opts.log_level
    cfg.medConfig.noVad = True
    cfg.medConfig.ecTailLen = 0
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = opts.port
    tcfg.boundAddress = LOOPBACK
    tcfg.publicAddress = LOOPBACK
    transport_id = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()

    wanted = [c.strip().upper() for c in opts.codecs.split(",") if c.strip()]
    for info in ep.codecEnum2():
        codec_name = info.codecId.split("/")[0].upper()
        prio = 255 - wanted.index(codec_name) if codec_name in wanted else 0
        ep.codecSetPriority(info.codecId, prio)

    calls: dict[int, Any] = {}
    recorders: dict[int, Any] = {}
    players: dict[int, Any] = {}
    pending_media: dict[int, list[Callable[[], None]]] = {}
    buddies: list[Any] = []
    state: dict[str, Any] = {"last_call": None, "running": True}

    def media_of(call: Any) -> Any | None:
        info = call.getInfo()
        for mi in info.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                return call.getAudioMedia(mi.index)
        return None

    def when_media(call_id: int, action: Callable[[], None]) -> None:
        call = calls[call_id]
        if media_of(call) is not None:
            action()
        else:
            pending_media.setdefault(call_id, []).append(action)

    def connect_media(call_id: int, source: Any | None, sink: Any | None) -> None:
        """Connect ``source`` to the call's audio, or the call's audio to ``sink``."""
        aud = media_of(calls[call_id])
        if aud is None:
            raise PhoneError(f"call {call_id} has no active audio")
        if source is not None:
            source.startTransmit(aud)
        if sink is not None:
            aud.startTransmit(sink)

    def close_recorder(call_id: int) -> None:
        rec = recorders.pop(call_id, None)
        if rec is not None:
            call = calls.get(call_id)
            with contextlib.suppress(Exception):
                aud = media_of(call) if call is not None else None
                if aud is not None:
                    aud.stopTransmit(rec)
            del rec  # destroying the port writes the final WAV header

    class Player(pj.AudioMediaPlayer):  # type: ignore[misc]
        def __init__(self, call_id: int) -> None:
            super().__init__()
            self.call_id = call_id

        def onEof2(self) -> None:
            event("play_done", call=self.call_id)

    class Call(pj.Call):  # type: ignore[misc]
        def onCallState(self, prm: Any) -> None:
            info = self.getInfo()
            name = _STATE_NAMES.get(info.state, str(info.state))
            event(
                "call_state",
                call=info.id,
                state=name,
                code=info.lastStatusCode,
                reason=info.lastReason,
                call_id=info.callIdString,
            )
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                close_recorder(info.id)
                players.pop(info.id, None)
                pending_media.pop(info.id, None)

        def onCallMediaState(self, prm: Any) -> None:
            info = self.getInfo()
            for mi in info.media:
                if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                    continue
                status = {
                    pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
                    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold",
                    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
                    pj.PJSUA_CALL_MEDIA_NONE: "none",
                }.get(mi.status, "error")
                codec = ""
                with contextlib.suppress(Exception):
                    codec = self.getStreamInfo(mi.index).codecName
                event(
                    "media_active" if status == "active" else "media_state",
                    call=info.id,
                    codec=codec,
                    status=status,
                )
                if status == "active":
                    for action in pending_media.pop(info.id, []):
                        action()
                break

        def onDtmfDigit(self, prm: Any) -> None:
            method = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc2833", pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}.get(
                prm.method, str(prm.method)
            )
            event("dtmf_received", call=self.getId(), digit=prm.digit, method=method, duration=prm.duration)

    class Account(pj.Account):  # type: ignore[misc]
        def onIncomingCall(self, prm: Any) -> None:
            call = Call(self, prm.callId)
            calls[prm.callId] = call
            state["last_call"] = prm.callId
            info = call.getInfo()
            event(
                "incoming_call",
                call=prm.callId,
                remote_uri=info.remoteUri,
                local_uri=info.localUri,
                call_id=info.callIdString,
                request=prm.rdata.wholeMsg,
            )
            if opts.auto_answer is not None:
                op = pj.CallOpParam()
                op.statusCode = opts.auto_answer
                call.answer(op)

        def onRegState(self, prm: Any) -> None:
            event("reg_state", code=prm.code, reason=prm.reason, expiration=prm.expiration)

        def onInstantMessage(self, prm: Any) -> None:
            event(
                "message_received",
                **{"from": prm.fromUri},
                to=prm.toUri,
                content_type=prm.contentType,
                text=prm.msgBody,
            )

        def onInstantMessageStatus(self, prm: Any) -> None:
            event("message_status", code=prm.code, reason=prm.reason, to=prm.toUri)

    def make_account(
        id_uri: str, registrar: str | None = None, user: str = "", password: str = "", realm: str = "*"
    ) -> Any:
        acfg = pj.AccountConfig()
        acfg.idUri = id_uri
        acfg.sipConfig.transportId = transport_id
        mt = acfg.mediaConfig.transportConfig
        mt.port = opts.rtp_port
        mt.portRange = 200
        mt.boundAddress = LOOPBACK
        mt.publicAddress = LOOPBACK
        acfg.natConfig.iceEnabled = False
        acfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        acfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        if registrar:
            acfg.regConfig.registrarUri = f"sip:{registrar}"
            acfg.regConfig.timeoutSec = 300
            acfg.regConfig.retryIntervalSec = 0
            cred = pj.AuthCredInfo("digest", realm, user, 0, password)
            acfg.sipConfig.authCreds.append(cred)
        acc = Account()
        acc.create(acfg, True)
        return acc

    accounts = [make_account(f"sip:{opts.name}@{LOOPBACK}:{opts.port}")]

    def call_by(args: Event) -> Any:
        ident = args.get("call")
        if ident is None:
            ident = state["last_call"]
        if ident is None or ident not in calls:
            raise PhoneError(f"no such call: {ident}")
        return calls[ident]

    def cmd_register(args: Event) -> Any:
        user = args["user"]
        host = args["registrar"]
        acc = make_account(f"sip:{user}@{host}", host, user, args["password"], args.get("realm", "*"))
        accounts.append(acc)
        return acc.getId()

    def cmd_call(args: Event) -> Any:
        call = Call(accounts[-1])
        op = pj.CallOpParam(True)
        for key, value in args.get("headers", {}).items():
            hdr = pj.SipHeader()
            hdr.hName = key
            hdr.hValue = value
            op.txOption.headers.append(hdr)
        call.makeCall(args["uri"], op)
        ident = call.getId()
        calls[ident] = call
        state["last_call"] = ident
        return ident

    def cmd_answer(args: Event) -> Any:
        op = pj.CallOpParam()
        op.statusCode = int(args.get("code") or 200)
        call_by(args).answer(op)

    def cmd_hangup(args: Event) -> Any:
        op = pj.CallOpParam()
        if args.get("code"):
            op.statusCode = int(args["code"])
        call_by(args).hangup(op)

    def cmd_hold(args: Event) -> Any:
        call = call_by(args)
        op = pj.CallOpParam(True)
        if args.get("resume"):
            op.opt.flag = pj.PJSUA_CALL_UNHOLD
            call.reinvite(op)
        else:
            call.setHold(op)

    def cmd_send_dtmf(args: Event) -> Any:
        call = call_by(args)
        prm = pj.CallSendDtmfParam()
        prm.digits = args["digits"]
        prm.duration = int(args.get("duration", 160))
        method = args.get("method", "rfc2833")
        if method == "rfc2833":
            prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
        elif method == "info":
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
        else:
            raise PhoneError(f"unknown DTMF method {method!r} (rfc2833 or info)")
        call.sendDtmf(prm)

    def cmd_play_wav(args: Event) -> Any:
        call = call_by(args)
        ident = call.getId()
        player = Player(ident)
        player.createPlayer(args["path"], pj.PJMEDIA_FILE_NO_LOOP)
        players[ident] = player
        when_media(ident, lambda: connect_media(ident, player, None))

    def cmd_record_to(args: Event) -> Any:
        call = call_by(args)
        ident = call.getId()
        close_recorder(ident)
        rec = pj.AudioMediaRecorder()
        rec.createRecorder(args["path"])
        recorders[ident] = rec
        when_media(ident, lambda: connect_media(ident, None, rec))
        return ident

    def cmd_stop_record(args: Event) -> Any:
        ident = call_by(args).getId()
        close_recorder(ident)
        return ident

    def cmd_send_message(args: Event) -> Any:
        bcfg = pj.BuddyConfig()
        bcfg.uri = args["uri"]
        bcfg.subscribe = False
        buddy = pj.Buddy()
        buddy.create(accounts[-1], bcfg)
        buddies.append(buddy)
        prm = pj.SendInstantMessageParam()
        prm.content = args["text"]
        prm.contentType = args.get("content_type", "text/plain")
        buddy.sendInstantMessage(prm)

    def cmd_quit(args: Event) -> Any:
        state["running"] = False

    handlers: dict[str, Callable[[Event], Any]] = {
        "register": cmd_register,
        "call": cmd_call,
        "answer": cmd_answer,
        "hangup": cmd_hangup,
        "hold": cmd_hold,
        "send_dtmf": cmd_send_dtmf,
        "play_wav": cmd_play_wav,
        "record_to": cmd_record_to,
        "stop_record": cmd_stop_record,
        "send_message": cmd_send_message,
        "quit": cmd_quit,
    }

    commands: queue.Queue[str | None] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            commands.put(line)
        commands.put(None)  # EOF: the test process is gone

    threading.Thread(target=read_stdin, daemon=True, name="stdin").start()
    event("ready", port=opts.port, rtp_port=opts.rtp_port, uri=f"sip:{opts.name}@{LOOPBACK}:{opts.port}")

    while state["running"]:
        ep.libHandleEvents(10)
        while True:
            try:
                line = commands.get_nowait()
            except queue.Empty:
                break
            if line is None:
                state["running"] = False
                break
            try:
                msg = json.loads(line)
            except ValueError as exc:
                emit({"id": None, "ok": False, "error": f"bad JSON: {exc}"})
                continue
            ident = msg.get("id")
            try:
                handler = handlers[msg["cmd"]]
                result = handler(msg.get("args") or {})
                emit({"id": ident, "ok": True, "result": result})
            except Exception as exc:
                emit({"id": ident, "ok": False, "error": f"{msg.get('cmd')}: {type(exc).__name__}: {exc}"})

    # Shut down: hang up, flush recordings, then leave without pjsua's fragile libDestroy.
    with contextlib.suppress(Exception):
        ep.hangupAllCalls()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        ep.libHandleEvents(10)
    for ident in list(recorders):
        close_recorder(ident)
    players.clear()
    proto.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    _phone_main(sys.argv[1:])
