"""Drive a real pjsua2 UA against our SDP offer/answer code; run as a subprocess.

pjsua2 calls a UDP socket owned by this script on 127.0.0.1.  Each INVITE's SDP offer is
answered with ``negotiate_answer`` in a hand-written 200 OK; the script then asks pjsua2
what it negotiated (codec, payload type, remote address, hold state) and prints JSON.
It is a helper for ``test_sdp.py``, kept out of the pytest process because the
pjsua2 endpoint is a process-wide singleton.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import pjsua2 as pj

from trunkline.gateway.sip.sdp import LocalMedia, SessionDescription, negotiate_answer, parse_sdp


def _headers(message: str) -> tuple[str, list[tuple[str, str]], str]:
    head, _, body = message.partition("\r\n\r\n")
    start, *lines = head.split("\r\n")
    pairs = []
    for line in lines:
        name, _, value = line.partition(":")
        pairs.append((name.strip(), value.strip()))
    return start, pairs, body


def _response(request: str, status: str, contact: str, body: str = "") -> bytes:
    _, pairs, _ = _headers(request)
    out = [f"SIP/2.0 {status}"]
    for name, value in pairs:
        lower = name.lower()
        if lower in ("via", "from", "call-id", "cseq"):
            out.append(f"{name}: {value}")
        elif lower == "to":
            out.append(f"{name}: {value}" + ("" if ";tag=" in value else ";tag=trunkline1"))
    out.append(f"Contact: <{contact}>")
    if body:
        out.append("Content-Type: application/sdp")
    out.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(out) + "\r\n\r\n" + body).encode()


class _Call(pj.Call):  # type: ignore[misc]
    pass


class _Account(pj.Account):  # type: ignore[misc]
    """Answers every incoming call with 200 OK."""

    def __init__(self) -> None:
        super().__init__()
        self.incoming: list[_Call] = []

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = _Call(self, prm.callId)
        self.incoming.append(call)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


def _request(method: str, target: str, port: int, cseq: int, to: str, body: str = "") -> bytes:
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-trunkline-{method.lower()}-{cseq};rport",
        "Max-Forwards: 70",
        f"From: <sip:trunkline@127.0.0.1:{port}>;tag=uac1",
        f"To: {to}",
        "Call-ID: uac-call-1@127.0.0.1",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:trunkline@127.0.0.1:{port}>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def main() -> None:
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    transport = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.01)
    port = sock.getsockname()[1]
    contact = f"sip:trunkline@127.0.0.1:{port}"
    local = LocalMedia(address="127.0.0.1", rtp_port=port + 2, session_id=4242)

    acfg = pj.AccountConfig()
    acfg.idUri = "sip:pj@127.0.0.1"
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    acc = _Account()
    acc.create(acfg)
    call = _Call(acc)
    call.makeCall(contact, pj.CallOpParam(True))

    result: dict[str, object] = {}
    previous: SessionDescription | None = None
    deadline = time.monotonic() + 20

    def pump(until: str) -> None:
        nonlocal previous
        while time.monotonic() < deadline:
            ep.libHandleEvents(5)
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode()
            start, _, body = _headers(text)
            method = start.split(" ", 1)[0]
            if method == "INVITE":
                offer = parse_sdp(body)
                answer, neg = negotiate_answer(offer, local, previous=previous)
                previous = answer
                key = "hold" if "hold" in result else "initial"
                result[key + "_offer_formats"] = list(offer.media[0].formats)
                result[key + "_offer_direction"] = offer.media[0].direction
                result[key + "_ours"] = {
                    "codec": neg.codec.encoding_name,
                    "pt": neg.payload_type,
                    "te_pt": neg.telephone_event_payload_type,
                    "remote": [neg.remote_address, neg.remote_port],
                    "direction": neg.direction,
                    "on_hold": neg.on_hold,
                    "version": answer.origin.sess_version,
                }
                sock.sendto(_response(text, "200 OK", contact, answer.serialize().decode()), addr)
            elif method == "BYE":
                sock.sendto(_response(text, "200 OK", contact), addr)
            elif method == "ACK" and until == "ack":
                for _ in range(20):
                    ep.libHandleEvents(5)
                return
            if method == until:
                return
        raise SystemExit(f"timed out waiting for {until}")

    pump("ack")
    info = call.getInfo()
    stream = call.getStreamInfo(0)
    result["pj_state_confirmed"] = info.state == pj.PJSIP_INV_STATE_CONFIRMED
    result["pj_codec"] = [stream.codecName, stream.codecClockRate, stream.txPt, stream.audTxEventPt]
    result["pj_remote_rtp"] = stream.remoteRtpAddress
    result["hold"] = True
    call.setHold(pj.CallOpParam(True))
    pump("ack")
    held_info = call.getInfo()
    result["pj_local_hold"] = held_info.media[0].status == pj.PJSUA_CALL_MEDIA_LOCAL_HOLD
    call.hangup(pj.CallOpParam(True))
    pump("BYE")
    for _ in range(10):
        ep.libHandleEvents(5)
    result["our_rtp_port"] = local.rtp_port
    result["uac"] = _uac(ep, acc, sock, port, ep.transportGetInfo(transport).localName)
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # skip pjsua2 teardown: destroying a finished Call object asserts


def _uac(ep: pj.Endpoint, acc: _Account, sock: socket.socket, port: int, pj_addr: str) -> dict[str, object]:
    """We offer (PCMA first), pjsua2 answers; process_answer must agree with pjsua2."""
    from trunkline.gateway.sip.sdp import PCMA, PCMU, TELEPHONE_EVENT_8000, build_offer, process_answer

    local = LocalMedia("127.0.0.1", port + 4, (PCMA, PCMU, TELEPHONE_EVENT_8000), session_id=99)
    offer = build_offer(local)
    target = f"sip:pj@{pj_addr}"
    sock.sendto(
        _request("INVITE", target, port, 1, f"<{target}>", offer.serialize().decode()), _addr(pj_addr)
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ep.libHandleEvents(5)
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        start, pairs, body = _headers(data.decode())
        if start.startswith("SIP/2.0 200"):
            break
    else:
        raise SystemExit("no 200 OK from pjsua2")
    to = next(v for n, v in pairs if n.lower() == "to")
    neg = process_answer(offer, parse_sdp(body))
    sock.sendto(_request("ACK", target, port, 1, to), _addr(pj_addr))
    for _ in range(20):
        ep.libHandleEvents(5)
    stream = acc.incoming[0].getStreamInfo(0)
    out: dict[str, object] = {
        "ours": [neg.codec.encoding_name, neg.payload_type, neg.telephone_event_payload_type, neg.direction],
        "remote": [neg.remote_address, neg.remote_port, neg.remote_rtcp_port],
        "pj": [stream.codecName, stream.txPt, stream.remoteRtpAddress],
        "our_rtp_port": local.rtp_port,
    }
    sock.sendto(_request("BYE", target, port, 2, to), _addr(pj_addr))
    for _ in range(20):
        ep.libHandleEvents(5)
    return out


def _addr(host_port: str) -> tuple[str, int]:
    host, _, port = host_port.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    main()
