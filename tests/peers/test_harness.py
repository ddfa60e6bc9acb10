"""Tests of the real-peer harness itself: SIPp and pjsua2 pointed at each other on 127.0.0.1.

The gateway is not involved; each scenario file is proven against a real counterpart.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.peers import audio, pcap
from tests.peers.pjsua_phone import PhoneError, PjsuaPhone
from tests.peers.ports import free_port_block, free_port_pair, free_tcp_port, free_udp_port
from tests.peers.sipp import (
    EXIT_KILLED,
    EXIT_SOME_FAILED,
    Sipp,
    SippFailure,
    derive_scenario,
    dtmf_2833_scenario,
    parse_screen,
    parse_stat_csv,
    scenario,
)

SIPP_PCAPS = Path("/usr/share/sip-tester")
pytestmark = pytest.mark.timeout(30)


def sipp_uas(name: str, workdir: Path, **kw: object) -> Sipp:
    return Sipp(scenario(name), workdir=workdir, calls=1, timeout=10, **kw)  # type: ignore[arg-type]


def sipp_uac(name: str | Path, remote_port: int, workdir: Path, **kw: object) -> Sipp:
    path = name if isinstance(name, Path) else scenario(name)
    return Sipp(path, remote=f"127.0.0.1:{remote_port}", workdir=workdir, calls=1, timeout=10, **kw)  # type: ignore[arg-type]


# --- ports --------------------------------------------------------------------------------------


def test_free_ports_are_bindable_distinct_and_paired() -> None:
    udp = {free_udp_port() for _ in range(20)}
    assert len(udp) == 20
    rtp, rtcp = free_port_pair()
    assert rtp % 2 == 0 and rtcp == rtp + 1
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
    ):
        a.bind(("127.0.0.1", rtp))
        b.bind(("127.0.0.1", rtcp))
    block = free_port_block(4)  # SIPp's -mp: audio and video RTP/RTCP
    assert block[0] % 2 == 0 and block == list(range(block[0], block[0] + 4))
    assert rtp not in block and rtcp not in block  # never handed out twice
    held = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in block]
    for sock, port in zip(held, block, strict=True):
        sock.bind(("127.0.0.1", port))
    for sock in held:
        sock.close()
    tcp = free_tcp_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", tcp))
        s.listen()


# --- pcap ---------------------------------------------------------------------------------------


def test_read_sipp_g711a_pcap() -> None:
    packets = pcap.rtp_payloads(SIPP_PCAPS / "g711a.pcap")
    assert len(packets) == 236
    assert {p.payload_type for p in packets} == {8}
    assert all(len(p.payload) == 240 for p in packets)  # 30 ms of A-law
    seqs = [p.sequence for p in packets]
    assert seqs == list(range(seqs[0], seqs[0] + 236))
    assert packets[1].timestamp - packets[0].timestamp == 240
    assert packets[0].src == ("10.1.3.143", 5000) and packets[0].dst[1] == 2006
    speech = pcap.rtp_audio(SIPP_PCAPS / "g711a.pcap", payload_type=8)
    assert speech.size == 236 * 240
    assert -40 < audio.rms_dbfs(speech) < -10


def test_read_sipp_dtmf_pcap() -> None:
    packets = pcap.rtp_payloads(SIPP_PCAPS / "dtmf_2833_pound.pcap")
    events = [pcap.DtmfEvent.parse(p.payload) for p in packets]
    assert {e.digit for e in events} == {"#"}
    assert packets[0].marker and not events[0].end and events[-1].end
    assert len({p.timestamp for p in packets}) == 1


def test_write_then_read_tone_pcap(tmp_path: Path) -> None:
    path = pcap.write_tone_pcap(tmp_path / "tone.pcap", 1000.0, seconds=1.0, codec="PCMA")
    packets = pcap.rtp_payloads(path)
    assert len(packets) == 50
    assert [p.time for p in packets[:3]] == pytest.approx([0.0, 0.02, 0.04])
    assert packets[0].marker and not packets[1].marker
    assert [p.timestamp for p in packets[:3]] == [0, 160, 320]
    samples = pcap.rtp_audio(path, payload_type=8)
    assert samples.size == 8000
    assert audio.dominant_frequency(samples, 8000) == pytest.approx(1000.0, abs=2)
    # tshark-independent check of the IPv4 header checksum we wrote (RFC 791: sums to 0xFFFF)
    frame = path.read_bytes()[24 + 16 :][:34]
    words = struct.unpack("!10H", frame[14:34])
    total = sum(words)
    assert (total & 0xFFFF) + (total >> 16) == 0xFFFF


def test_write_dtmf_pcap_sequence(tmp_path: Path) -> None:
    path = pcap.write_dtmf_pcap(tmp_path / "d.pcap", "4#", duration_ms=100)
    packets = pcap.rtp_payloads(path, payload_type=101)
    events = [pcap.DtmfEvent.parse(p.payload) for p in packets]
    assert "".join(dict.fromkeys(e.digit for e in events)) == "4#"
    assert [p.sequence for p in packets] == list(range(len(packets)))
    assert sum(e.end for e in events) == 6  # end packet three times per digit
    assert max(e.duration for e in events) == 800
    assert len({p.timestamp for p in packets}) == 2


def test_linux_cooked_capture_and_filters(tmp_path: Path) -> None:
    rtp = pcap.RtpPacket(0.0, ("", 0), ("", 0), 0, True, 7, 1234, 99, b"\xff" * 160).serialize()
    eth = pcap._frame(pcap.UdpPacket(0.0, ("127.0.0.1", 4000), ("127.0.0.1", 4002), rtp), 1)
    sll = struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, 0x0800) + eth[14:]
    sip = pcap._frame(
        pcap.UdpPacket(0.0, ("127.0.0.1", 5060), ("127.0.0.1", 5062), b"OPTIONS sip:x SIP/2.0"), 2
    )
    sip_sll = struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, 0x0800) + sip[14:]
    arp = struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, 0x0806) + b"\0" * 28
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, pcap.LINKTYPE_LINUX_SLL)
    records = b"".join(struct.pack("<IIII", 1, 500000, len(f), len(f)) + f for f in (sll, sip_sll, arp))
    path = tmp_path / "cooked.pcap"
    path.write_bytes(header + records)
    udp = pcap.read_udp(path)
    assert len(udp) == 2 and udp[0].time == pytest.approx(1.5)
    got = pcap.rtp_payloads(path)
    assert len(got) == 1
    assert (got[0].sequence, got[0].timestamp, got[0].ssrc, got[0].marker) == (7, 1234, 99, True)
    assert pcap.rtp_payloads(path, dst_port=4002) and not pcap.rtp_payloads(path, dst_port=4003)


def test_malformed_pcap_and_rtp_raise_precise_errors(tmp_path: Path) -> None:
    with pytest.raises(pcap.PcapError, match="truncated"):
        list(pcap.iter_udp(b"\xd4\xc3\xb2\xa1"))
    with pytest.raises(pcap.PcapError, match="not a classic pcap"):
        list(pcap.iter_udp(b"\x0a\x0d\x0d\x0a" + b"\0" * 40))
    good = (SIPP_PCAPS / "dtmf_2833_1.pcap").read_bytes()
    with pytest.raises(pcap.PcapError, match="record at byte"):
        list(pcap.iter_udp(good[:-5]))
    with pytest.raises(pcap.PcapError, match="version is 1"):
        pcap.RtpPacket.parse(b"\x40" + b"\0" * 11)
    with pytest.raises(pcap.PcapError, match="shorter than the 12-byte header"):
        pcap.RtpPacket.parse(b"\x80\x00")
    with pytest.raises(pcap.PcapError, match="padding"):
        pcap.RtpPacket.parse(b"\xa0" + b"\0" * 11 + b"\x05")


def test_rtp_header_fields_csrc_extension_padding() -> None:
    data = (
        bytes([0x80 | 0x20 | 0x10 | 1, 0x80 | 8])
        + struct.pack("!HII", 65535, 0xFFFFFFFF, 0x01020304)
        + struct.pack("!I", 0xAABBCCDD)
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x11\x22\x33\x44"
        + b"payload"
        + b"\x00\x00\x03"
    )
    p = pcap.RtpPacket.parse(data)
    assert (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc) == (
        8,
        True,
        65535,
        0xFFFFFFFF,
        0x01020304,
    )
    assert p.csrcs == (0xAABBCCDD,)
    assert p.payload == b"payload"


# --- audio --------------------------------------------------------------------------------------


def test_g711_decoders_are_standard() -> None:
    # ITU-T G.711: mu-law 0xFF and A-law 0xD5 are the smallest positive levels; 0x00/0x2A peaks.
    assert audio.decode_pcmu(b"\xff\x7f\x00\x80").tolist() == [0, 0, -32124, 32124]
    assert audio.decode_pcma(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]
    tone = audio.tone(440.0, 0.5)
    back = audio.decode_pcmu(audio.encode_pcmu(tone))
    assert audio.correlation(tone, back).coefficient > 0.999
    with pytest.raises(ValueError, match=r"not G\.711"):
        audio.decode_g711(b"\0", 18)


def test_tone_measurements() -> None:
    rate = 8000
    tone = audio.tone(1000.0, 0.5, rate, level_dbfs=-6.0)
    assert audio.dominant_frequency(tone, rate) == pytest.approx(1000.0, abs=1)
    assert audio.rms_dbfs(tone) == pytest.approx(-9.03, abs=0.1)  # sine RMS = peak - 3.01 dB
    assert audio.band_energy(tone, rate, 1000.0, 50) > 0.99
    assert audio.band_energy(tone, rate, 2000.0, 50) < 0.01
    assert audio.contains_tone(tone, rate, 1000.0)
    assert not audio.contains_tone(tone, rate, 1400.0)
    assert not audio.contains_tone(np.zeros(4000, np.int16), rate, 1000.0)
    assert audio.rms_dbfs(np.zeros(10)) == float("-inf")
    noise = np.random.default_rng(7).normal(0, 2000, 8000).astype(np.int16)
    assert not audio.contains_tone(noise, rate, 1000.0)
    assert audio.detect_dtmf(audio.dtmf_tone("9")) == "9"
    assert audio.detect_dtmf(audio.dtmf_tone("*")) == "*"
    assert audio.detect_dtmf(tone) is None


def test_correlation_finds_lag() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 3000, 4000)
    delayed = np.concatenate([np.zeros(321), ref * 0.5])
    match = audio.correlation(ref, delayed)
    assert match.lag == 321 and match.coefficient > 0.999
    assert audio.correlation(delayed, ref).lag == -321
    assert audio.correlation(ref, rng.normal(0, 3000, 4000)).coefficient < 0.3
    assert audio.correlation(ref, -ref).coefficient < 0.3  # only positive matches count
    assert audio.correlation(ref, delayed, max_lag=100).coefficient < 0.3


def test_wav_roundtrip(tmp_path: Path) -> None:
    tone = audio.tone(700.0, 0.25, 16000)
    audio.write_wav(tmp_path / "t.wav", tone, 16000)
    samples, rate = audio.read_wav(tmp_path / "t.wav")
    assert rate == 16000 and np.array_equal(samples, tone)


# --- SIPp: command line, parsing ----------------------------------------------------------------


def test_sipp_command_line(tmp_path: Path) -> None:
    s = Sipp(
        scenario("uac_auth"),
        remote="127.0.0.1:5060",
        workdir=tmp_path,
        local_port=5070,
        media_port=6000,
        calls=3,
        rate=10,
        limit=2,
        timeout=7,
        service="+15550001",
        auth_user="alice",
        auth_password="pw",
        variables={"user": "alice"},
        rtp_echo=True,
        trace_msg=False,
        inf=tmp_path / "users.csv",
        keywords={"k": "v"},
    )
    cmd = s.command()
    joined = " ".join(cmd)
    assert cmd[0].endswith("sipp") and cmd[1] == "127.0.0.1:5060"
    for part in (
        "-sf " + str(scenario("uac_auth")),
        "-i 127.0.0.1 -p 5070",
        "-mi 127.0.0.1 -mp 6000",
        "-m 3",
        "-r 10",
        "-l 2",
        "-timeout 7s -timeout_error",
        "-s +15550001",
        "-au alice -ap pw",
        "-set user alice",
        "-rtp_echo",
        "-trace_stat -stf",
        "-nostdin",
        "-ci 127.0.0.1",
        f"-inf {tmp_path / 'users.csv'}",
        "-key k v",
    ):
        assert part in joined, part
    assert "-trace_msg" not in cmd and "-bg" not in cmd
    assert Sipp("uas", workdir=tmp_path).command()[1:3] == ["-sn", "uas"]
    with pytest.raises(ValueError, match="neither a built-in"):
        Sipp("no_such_scenario", workdir=tmp_path).command()


def test_parse_stat_and_screen() -> None:
    csv_text = "A;SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n1;0;0;0;\n2;5;1;3;\n"
    counters = parse_stat_csv(csv_text)
    assert counters["SuccessfulCall(C)"] == "5" and counters["Retransmissions(C)"] == "3"
    screen = """------------------------------ Scenario Screen -------- [1-9]: Change Screen --
                                 Messages  Retrans   Timeout   Unexpected-Msg
      INVITE ---------->         2         1         0
         180 <----------         2         0         0         0
         200 <----------  E-RTD1 2         0         0         3
  ----------> BYE                1         0         0         0
  <---------- 200                1         0
       Pause [    300ms]         2                             0
------- Waiting for active calls to end. Press [q] again to force exit. -------
"""
    rows = parse_screen(screen)
    assert [(r.label, r.direction, r.messages) for r in rows] == [
        ("INVITE", "send", 2),
        ("180", "recv", 2),
        ("200", "recv", 2),
        ("BYE", "recv", 1),
        ("200", "send", 1),
        ("Pause [ 300ms]", "", 2),
    ]
    assert rows[0].retrans == 1 and rows[2].unexpected == 3


# --- SIPp against SIPp --------------------------------------------------------------------------


async def test_builtin_uac_three_calls(tmp_path: Path) -> None:
    async with Sipp(scenario("uas_answer"), workdir=tmp_path, calls=3, timeout=10) as uas:
        uac = Sipp(
            "uac", remote=f"127.0.0.1:{uas.local_port}", workdir=tmp_path, calls=3, rate=100, timeout=10
        )
        result = (await uac.run()).check(calls=3, retransmissions=0)
    assert result.failed == 0 and result.unexpected == 0 and result.created == 3
    assert result.row("INVITE").messages == 3 and result.row("BYE").direction == "send"
    assert "INVITE sip:service@127.0.0.1" in uac.messages
    assert uas.result is not None and uas.result.ok and uas.result.successful == 3


async def test_cancel_against_noanswer(tmp_path: Path) -> None:
    async with sipp_uas("uas_noanswer", tmp_path) as uas:
        result = (await sipp_uac("uac_cancel", uas.local_port, tmp_path).run()).check(calls=1)
    assert result.row("487").messages == 1 and result.row("CANCEL").direction == "send"
    assert uas.result is not None
    uas.result.check(calls=1)
    assert "SIP/2.0 487 Request Terminated" in uas.messages and "CSeq: 1 INVITE" in uas.messages


async def test_failed_call_is_reported(tmp_path: Path) -> None:
    # uac_cancel expects 180 but uas_busy answers 486: one failed call, exit code 1.
    async with sipp_uas("uas_busy", tmp_path) as uas:
        result = await sipp_uac("uac_cancel", uas.local_port, tmp_path).run()
    assert result.returncode == EXIT_SOME_FAILED and result.failed == 1 and result.successful == 0
    assert result.unexpected == 1 and "486 Busy Here" in result.errors
    with pytest.raises(SippFailure, match="1 failed"):
        result.check()
    assert uas.result is not None and uas.result.ok


@pytest.mark.parametrize(("password", "ok"), [("s3cret", True), ("wrong", False)])
async def test_digest_auth_against_verifying_uas(tmp_path: Path, password: str, ok: bool) -> None:
    creds = {"user": "alice", "password": "s3cret"}
    async with sipp_uas("uas_invite_auth", tmp_path, variables=creds) as uas:
        uac = sipp_uac("uac_auth", uas.local_port, tmp_path, auth_user="alice", auth_password=password)
        result = await uac.run()
    assert uas.result is not None
    assert result.ok is ok and uas.result.ok is ok
    assert 'Authorization: Digest username="alice"' in uac.messages
    if not ok:
        assert "403 Forbidden" in result.errors


async def test_info_and_hold_against_uas_answer(tmp_path: Path) -> None:
    async with sipp_uas("uas_answer", tmp_path) as uas:
        (await sipp_uac("uac_info_dtmf", uas.local_port, tmp_path).run()).check(calls=1)
    assert "Signal=5" in uas.messages
    async with sipp_uas("uas_answer", tmp_path) as uas:
        hold = sipp_uac("uac_hold", uas.local_port, tmp_path)
        (await hold.run()).check(calls=1)
    assert uas.result is not None and uas.result.ok
    assert "a=recvonly" in hold.messages  # the UAS's answer to the sendonly offer


async def test_tone_uas_plays_generated_pcap(tmp_path: Path) -> None:
    # uas_tone plays a pcap we generated; SIPp's uac_dtmf_2833 is the caller.
    pcap.write_tone_pcap(tmp_path / "tone.pcap", 1000.0, seconds=1.0)
    async with sipp_uas("uas_tone", tmp_path) as uas:
        (await sipp_uac("uac_dtmf_2833", uas.local_port, tmp_path).run()).check(calls=1)
    assert uas.result is not None and uas.result.ok


def test_run_sync_kills_on_hard_timeout(tmp_path: Path) -> None:
    result = Sipp("uas", workdir=tmp_path, timeout=30, kill_after=0.5).run_sync()
    assert result.timed_out and result.returncode == EXIT_KILLED and not result.ok


def test_run_sync_against_nobody_times_out(tmp_path: Path) -> None:
    dead = free_udp_port()
    result = Sipp("uac", remote=f"127.0.0.1:{dead}", workdir=tmp_path, timeout=1.5).run_sync()
    assert not result.ok and not result.timed_out and result.successful == 0
    assert "timed out" in result.errors


async def test_start_failure_is_reported(tmp_path: Path) -> None:
    # Without the user/password globals uas_register_auth still loads; a missing pcap does not.
    with pytest.raises(SippFailure, match="exited at start-up"):
        async with sipp_uas("uas_tone", tmp_path):  # no tone.pcap in tmp_path
            pass


def test_derive_scenario(tmp_path: Path) -> None:
    path = derive_scenario("uac_info_dtmf", tmp_path, {"Signal=5": "Signal=9"})
    assert "Signal=9" in path.read_text() and path.parent == tmp_path
    with pytest.raises(ValueError, match="does not occur"):
        derive_scenario("uac_info_dtmf", tmp_path, {"Signal=X": "Signal=9"})
    dtmf = dtmf_2833_scenario(tmp_path, "5#").read_text()
    played = [line.strip() for line in dtmf.splitlines() if "play_pcap_audio" in line]
    assert played == [
        '<exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_5.pcap"/>',
        '<exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_pound.pcap"/>',
    ]


# --- pjsua2 against SIPp and against pjsua2 -----------------------------------------------------


async def test_pjsua_registers_with_sipp_registrar(tmp_path: Path) -> None:
    creds = {"user": "alice", "password": "s3cret"}
    async with (
        sipp_uas("uas_register_auth", tmp_path, variables=creds) as registrar,
        PjsuaPhone(workdir=tmp_path, name="alice") as phone,
    ):
        state = await phone.register(f"127.0.0.1:{registrar.local_port}", "alice", "s3cret")
        assert state is not None and state["code"] == 200 and state["expiration"] > 0
    assert registrar.result is not None
    registrar.result.check(calls=1)
    assert "WWW-Authenticate: Digest" in registrar.messages


async def test_pjsua_wrong_password_is_refused(tmp_path: Path) -> None:
    creds = {"user": "alice", "password": "s3cret"}
    async with (
        sipp_uas("uas_register_auth", tmp_path, variables=creds) as registrar,
        PjsuaPhone(workdir=tmp_path, name="alice") as phone,
    ):
        state = await phone.register(f"127.0.0.1:{registrar.local_port}", "alice", "nope")
        assert state is not None and state["code"] == 403
    assert registrar.result is not None and registrar.result.failed == 1


async def test_pjsua_calls_echoing_sipp_and_hears_its_tone(tmp_path: Path) -> None:
    audio.write_wav(tmp_path / "tone.wav", audio.tone(1000.0, 1.0))
    async with (
        sipp_uas("uas_answer", tmp_path, rtp_echo=True) as uas,
        PjsuaPhone(workdir=tmp_path, name="caller") as phone,
    ):
        call = await phone.call(f"sip:echo@127.0.0.1:{uas.local_port}", headers={"X-Trunkline-Test": "echo"})
        await phone.record_to(tmp_path / "echo.wav", call=call)
        media = await phone.wait_for("media_active", call=call)
        assert media["codec"] == "PCMU"
        await phone.play_wav(tmp_path / "tone.wav", call=call)
        await phone.wait_for("play_done", timeout=5)
        await phone.hangup(call=call)
        await phone.wait_for("call_state", state="DISCONNECTED")
        await phone.finished_wav(tmp_path / "echo.wav")
    assert uas.result is not None
    uas.result.check(calls=1)
    assert "X-Trunkline-Test: echo" in uas.messages
    heard, rate = audio.read_wav(tmp_path / "echo.wav")
    assert rate == 8000
    assert audio.contains_tone(heard, rate, 1000.0, min_dbfs=-40)
    assert audio.dominant_frequency(heard, rate) == pytest.approx(1000.0, abs=5)


async def test_pjsua_answers_sipp_uac_playing_g711a_pcap(tmp_path: Path) -> None:
    async with PjsuaPhone(workdir=tmp_path, name="callee", auto_answer=200) as phone:
        uac = sipp_uac("uac_pcap_g711a", phone.port, tmp_path, service="callee")
        await uac.start()
        incoming = await phone.wait_for("incoming_call")
        await phone.record_to(tmp_path / "heard.wav", call=incoming["call"])
        assert "m=audio" in incoming["request"] and "PCMA/8000" in incoming["request"]
        (await uac.wait()).check(calls=1)
        await phone.wait_for("call_state", state="DISCONNECTED")
        await phone.finished_wav(tmp_path / "heard.wav")
    heard, _ = audio.read_wav(tmp_path / "heard.wav")
    sent = pcap.rtp_audio(SIPP_PCAPS / "g711a.pcap", payload_type=8)
    # Per-second windows, each at its own best lag: a single jitter-buffer glitch (a dropped or
    # concealed frame shifts everything after it) must not fail the check.
    windows = [heard[i : i + 8000] for i in range(0, heard.size - 8000, 8000)]
    scores = [audio.correlation(sent, w).coefficient for w in windows if audio.rms_dbfs(w) > -45]
    assert len(scores) >= 5 and float(np.median(scores)) > 0.95, scores


async def test_pjsua_hears_generated_tone_from_sipp(tmp_path: Path) -> None:
    pcap.write_tone_pcap(tmp_path / "tone.pcap", 1000.0, seconds=1.0)
    async with (
        sipp_uas("uas_tone", tmp_path) as uas,
        PjsuaPhone(workdir=tmp_path, name="listener") as phone,
    ):
        call = await phone.call(f"sip:tone@127.0.0.1:{uas.local_port}")
        await phone.record_to(tmp_path / "tone.wav", call=call)
        await phone.wait_for("media_active", call=call)
        path = tmp_path / "tone.wav"
        await phone.wait_for("call_state", state="CONFIRMED")
        await asyncio.sleep(1.3)
        await phone.hangup(call=call)
        await phone.finished_wav(path)
    assert uas.result is not None
    uas.result.check(calls=1)
    heard, rate = audio.read_wav(path)
    assert audio.contains_tone(heard, rate, 1000.0, min_dbfs=-40)


async def test_loopback_capture_of_sipp_tone(tmp_path: Path) -> None:
    ok, why = pcap.capture_available()
    if not ok:
        pytest.skip(why)
    pcap.write_tone_pcap(tmp_path / "tone.pcap", 1000.0, seconds=0.6)
    async with (
        sipp_uas("uas_tone", tmp_path) as uas,
        pcap.LoopbackCapture(tmp_path / "cap.pcap", f"udp port {uas.media_port}") as cap,
        PjsuaPhone(workdir=tmp_path, name="listener") as phone,
    ):
        call = await phone.call(f"sip:tone@127.0.0.1:{uas.local_port}")
        await phone.wait_for("media_active", call=call)
        await asyncio.sleep(1.0)
        await phone.hangup(call=call)
    sent = cap.rtp(src_port=uas.media_port)
    assert len(sent) == 30 and {p.payload_type for p in sent} == {0}
    assert {p.dst for p in sent} == {("127.0.0.1", phone.rtp_port)}
    heard = audio.decode_pcmu(b"".join(p.payload for p in sent))
    assert audio.dominant_frequency(heard, 8000) == pytest.approx(1000.0, abs=2)
    received = cap.rtp(dst_port=uas.media_port)  # what the phone sent to SIPp
    assert received and all(p.src[1] == phone.rtp_port for p in received)


async def test_sipp_uac_pcap_against_sipp_rtp_echo(tmp_path: Path) -> None:
    ok, why = pcap.capture_available()
    if not ok:
        pytest.skip(why)
    pcap.write_tone_pcap(tmp_path / "tone.pcap", 800.0, seconds=0.6, codec="PCMA", ptime_ms=30)
    short = derive_scenario(
        "uac_pcap_g711a",
        tmp_path,
        {
            "/usr/share/sip-tester/g711a.pcap": str(tmp_path / "tone.pcap"),
            'pause milliseconds="7300"': 'pause milliseconds="900"',
        },
    )
    async with (
        sipp_uas("uas_answer", tmp_path, rtp_echo=True) as uas,
        pcap.LoopbackCapture(tmp_path / "echo.pcap", f"udp port {uas.media_port}") as cap,
    ):
        uac = sipp_uac(short, uas.local_port, tmp_path)
        (await uac.run()).check(calls=1)
    assert uas.result is not None
    uas.result.check(calls=1)
    to_uas = cap.rtp(dst_port=uas.media_port)
    echoed = cap.rtp(src_port=uas.media_port)
    assert len(to_uas) == 20 and {p.payload_type for p in to_uas} == {8}
    assert [p.payload for p in echoed] == [p.payload for p in to_uas]
    heard = audio.decode_pcma(b"".join(p.payload for p in echoed))
    assert audio.dominant_frequency(heard, 8000) == pytest.approx(800.0, abs=2)


async def test_pjsua_receives_sipp_dtmf(tmp_path: Path) -> None:
    async with PjsuaPhone(workdir=tmp_path, name="ivr", auto_answer=200) as phone:
        (
            await sipp_uac(dtmf_2833_scenario(tmp_path, "15#"), phone.port, tmp_path, service="ivr").run()
        ).check(calls=1)
        digits = [(await phone.wait_for("dtmf_received"))["digit"] for _ in range(3)]
        assert digits == ["1", "5", "#"]
        (await sipp_uac("uac_info_dtmf", phone.port, tmp_path, service="ivr").run()).check(calls=1)
        info = await phone.wait_for("dtmf_received", method="info")
        assert info["digit"] == "5"


async def test_pjsua_receives_generated_dtmf_pcap_and_is_cancelled(tmp_path: Path) -> None:
    # Our RFC 4733 pcap writer, played by SIPp, understood by pjsua.
    pcap.write_dtmf_pcap(tmp_path / "digits.pcap", "72*", duration_ms=120)
    played = derive_scenario(
        "uac_dtmf_2833",
        tmp_path,
        {
            "/usr/share/sip-tester/dtmf_2833_1.pcap": str(tmp_path / "digits.pcap"),
            'milliseconds="400"': 'milliseconds="900"',
        },
    )
    async with PjsuaPhone(workdir=tmp_path, name="ivr", auto_answer=200) as phone:
        (await sipp_uac(played, phone.port, tmp_path, service="ivr").run()).check(calls=1)
        digits = [(await phone.wait_for("dtmf_received"))["digit"] for _ in range(3)]
        assert digits == ["7", "2", "*"]
    async with PjsuaPhone(workdir=tmp_path, name="ringing", auto_answer=180) as phone:
        (await sipp_uac("uac_cancel", phone.port, tmp_path, service="ringing").run()).check(calls=1)
        state = await phone.wait_for("call_state", state="DISCONNECTED")
        assert state["code"] == 487


async def test_pjsua_hold_and_remote_bye_with_sipp(tmp_path: Path) -> None:
    async with PjsuaPhone(workdir=tmp_path, name="held", auto_answer=200) as phone:
        hold = sipp_uac("uac_hold", phone.port, tmp_path, service="held")
        (await hold.run()).check(calls=1)
        assert "a=recvonly" in hold.messages or "a=inactive" in hold.messages
        await phone.wait_for("media_state", status="remote_hold")
        first = await phone.wait_for("incoming_call")
        uac = sipp_uac("uac_bye_from_remote", phone.port, tmp_path, service="held")
        await uac.start()
        second = await phone.wait_for("incoming_call")
        assert second["call_id"] != first["call_id"]
        # pjsua reuses call numbers: match the SIP Call-ID to find this call's state events.
        await phone.wait_for("call_state", call_id=second["call_id"], state="CONFIRMED")
        await phone.hangup(call=second["call"])
        (await uac.wait()).check(calls=1)


async def test_pjsua_sees_busy_and_cancels_ringing(tmp_path: Path) -> None:
    async with sipp_uas("uas_busy", tmp_path) as busy, PjsuaPhone(workdir=tmp_path) as phone:
        await phone.call(f"sip:busy@127.0.0.1:{busy.local_port}")
        state = await phone.wait_for("call_state", state="DISCONNECTED")
        assert state["code"] == 486
    async with sipp_uas("uas_noanswer", tmp_path) as ringing, PjsuaPhone(workdir=tmp_path) as phone:
        await phone.call(f"sip:ring@127.0.0.1:{ringing.local_port}")
        await phone.wait_for("call_state", state="EARLY")
        await phone.hangup()
        state = await phone.wait_for("call_state", state="DISCONNECTED")
        assert state["code"] == 487
    assert ringing.result is not None
    ringing.result.check(calls=1)


async def test_two_pjsua_phones_message_and_rfc2833(tmp_path: Path) -> None:
    async with (
        PjsuaPhone(workdir=tmp_path, name="alice") as alice,
        PjsuaPhone(workdir=tmp_path, name="bob") as bob,
    ):
        await alice.send_message(bob.uri, "Привет, Боб")
        received = await bob.wait_for("message_received")
        assert received["text"] == "Привет, Боб" and "alice" in received["from"]
        assert (await alice.wait_for("message_status"))["code"] == 200

        call = await alice.call(bob.uri)
        incoming = await bob.wait_for("incoming_call")
        await bob.answer(call=incoming["call"])
        await alice.wait_for("media_active", call=call)
        await bob.wait_for("media_active")
        await alice.send_dtmf("159#", method="rfc2833")
        got = [await bob.wait_for("dtmf_received", method="rfc2833") for _ in range(4)]
        assert "".join(g["digit"] for g in got) == "159#"
        await bob.hangup()
        assert (await alice.wait_for("call_state", state="DISCONNECTED"))["code"] == 200


async def test_phone_errors_are_typed(tmp_path: Path) -> None:
    async with PjsuaPhone(workdir=tmp_path) as phone:
        with pytest.raises(PhoneError, match="no such call"):
            await phone.hangup()
        with pytest.raises(PhoneError, match="no incoming_call"):
            await phone.wait_for("incoming_call", timeout=0.2)
