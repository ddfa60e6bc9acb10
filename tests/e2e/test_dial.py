"""E2E: ``<Dial><Sip>`` from a SIPp caller to SIPp callees, audio checked on both sides.

Each SIPp's SDP points its audio at a test :class:`~tests.media.rtp_phone.Phone` that plays its
own tone and keeps what it hears, so a bridge is proven by each side hearing the other's tone.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from aiohttp import web
from twilio.twiml.voice_response import Dial, VoiceResponse

from tests.e2e.conftest import (
    ACCOUNT,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.media.rtp_phone import Phone
from tests.peers import audio
from tests.peers.pcap import write_tone_pcap
from tests.peers.sipp import Sipp, SippResult, derive_scenario, scenario
from trunkline.gateway.server import Server
from trunkline.gateway.store import Filter
from trunkline.gateway.switch import dial as dial_module

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

CALLER_HZ = 700.0
CALLEE_HZ = 1300.0


async def start(tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline) -> Server:
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    assert server.switch is not None
    dial_module.install(server.switch, trunks=server.trunks, location=server.location)
    return server


def callee(tmp_path: Path, media_port: int, *, hold_ms: int | None = 3000, name: str = "callee") -> Sipp:
    """A SIPp UAS with its audio at ``media_port``; BYE after ``hold_ms`` (None: waits for ours)."""
    if hold_ms is None:
        path = derive_scenario(
            "uas_answer",
            tmp_path,
            {"m=audio [media_port] RTP/AVP": f"m=audio {media_port} RTP/AVP"},
            name=name,
        )
    else:
        path = derive_scenario(
            "uas_answer_bye",
            tmp_path,
            {
                "m=audio [media_port] RTP/AVP": f"m=audio {media_port} RTP/AVP",
                'pause milliseconds="3000"': f'pause milliseconds="{hold_ms}"',
            },
            name=name,
        )
    return Sipp(path, workdir=tmp_path, timeout=25)


def caller_port(server: Server, app: CustomerApp) -> int | None:
    """Trunkline's RTP port for the caller (once the call's TwiML was requested)."""
    assert server.switch is not None
    for request in app.to("/voice"):
        active = server.switch.calls.get(request.form["CallSid"])
        if active is not None and active.channel is not None:
            return active.channel.stream.local_port
    return None


def callee_port(server: Server, app: CustomerApp) -> int | None:
    """Trunkline's RTP port for the answered child leg of the caller's ``<Dial>``."""
    assert server.switch is not None
    parents = {r.form["CallSid"] for r in app.to("/voice")}
    for active in list(server.switch.calls.values()):
        if active.call.parent_call_sid in parents and active.channel is not None:
            return active.channel.stream.local_port
    return None


async def talk(phone: Phone, freq: float, seconds: float, port: Callable[[], int | None]) -> None:
    """Wait until Trunkline's RTP port for this side is known, then send it a tone."""
    for _ in range(500):
        found = port()
        if found is not None:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("no RTP port for this side")
    await phone.send_paced(
        phone.audio_packets(audio.tone(freq, seconds, 8000, level_dbfs=-10.0)), ("127.0.0.1", found)
    )


async def call_with_talkers(
    tmp_path: Path,
    server: Server,
    app: CustomerApp,
    caller_phone: Phone,
    callee_phone: Phone,
    seconds: float,
) -> SippResult:
    """Place one SIPp call while both phones send their tone (``CALLER_HZ`` and ``CALLEE_HZ``)."""
    loop = asyncio.get_running_loop()
    talkers = [
        loop.create_task(talk(caller_phone, CALLER_HZ, seconds, lambda: caller_port(server, app))),
        loop.create_task(talk(callee_phone, CALLEE_HZ, seconds, lambda: callee_port(server, app))),
    ]
    try:
        return await sipp_caller(tmp_path, sip_address(server), caller_phone.port).run()
    finally:
        for task in talkers:
            task.cancel()


def heard(phone: Phone, freq: float) -> bool:
    samples = phone.audio_from(0)
    step, size = 800, 4000
    return any(
        audio.contains_tone(samples[i : i + size], 8000, freq, min_fraction=0.7)
        for i in range(0, max(1, samples.size - size), step)
    )


def dial_twiml(
    target: str, *, build: Callable[[Dial], None] | None = None, **attributes: object
) -> Callable[[AppRequest], web.Response]:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        dial = response.dial(action="/dialed", **attributes)
        if build is not None:
            build(dial)
        else:
            dial.sip(target)
        return twiml(response)

    return voice


def hangup(request: AppRequest) -> web.Response:
    response = VoiceResponse()
    response.hangup()
    return twiml(response)


async def child_records(server: Server, parent_sid: str) -> list[dict[str, object]]:
    for _ in range(100):
        records = (await server.store.select("calls", [Filter("parent_call_sid", "=", parent_sid)])).records
        if records and all(r["status"] not in ("queued", "ringing", "in-progress") for r in records):
            return records
        await asyncio.sleep(0.05)
    return records


async def test_dial_sip_bridges_audio_both_ways(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    loop = asyncio.get_running_loop()
    caller_phone, callee_phone = Phone(loop), Phone(loop)
    try:
        async with callee(tmp_path, callee_phone.port, hold_ms=3500) as uas:
            customer_app.route(
                "/voice", dial_twiml(f"sip:bob@127.0.0.1:{uas.local_port}?X-Team=blue", timeout=10)
            )
            customer_app.route("/dialed", hangup)
            result = await call_with_talkers(tmp_path, server, customer_app, caller_phone, callee_phone, 4.0)
        result.check(calls=1)
        assert uas.result is not None
        uas.result.check(calls=1)
        assert heard(caller_phone, CALLEE_HZ), "the caller did not hear the callee"
        assert heard(callee_phone, CALLER_HZ), "the callee did not hear the caller"
    finally:
        caller_phone.close()
        callee_phone.close()

    (voice,) = customer_app.to("/voice")
    (action,) = await customer_app.wait_for("/dialed")
    assert action.signature_valid()
    form = action.form
    assert form["DialCallStatus"] == "completed"
    assert form["DialBridged"] == "true"
    assert form["DialSipResponseCode"] == "200"
    assert form["DialCallSid"].startswith("CA") and form["DialCallSid"] != voice.form["CallSid"]
    assert 2 <= int(form["DialCallDuration"]) <= 5
    (child,) = await child_records(server, voice.form["CallSid"])
    assert child["sid"] == form["DialCallSid"]
    assert child["direction"] == "outbound-dial"
    assert child["status"] == "completed"
    assert child["from"] == voice.form["From"]
    assert child["to"] == f"sip:bob@127.0.0.1:{uas.local_port}"
    assert child["account_sid"] == ACCOUNT.sid


async def test_dial_busy(tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    phone = Phone(asyncio.get_running_loop())
    try:
        async with Sipp(scenario("uas_busy"), workdir=tmp_path, timeout=15) as uas:
            customer_app.route("/voice", dial_twiml(f"sip:busy@127.0.0.1:{uas.local_port}"))
            customer_app.route("/dialed", hangup)
            result = await sipp_caller(tmp_path, sip_address(server), phone.port).run()
        result.check(calls=1)
    finally:
        phone.close()
    (action,) = await customer_app.wait_for("/dialed")
    form = action.form
    assert form["DialCallStatus"] == "busy"
    assert form["DialSipResponseCode"] == "486"
    assert form["DialBridged"] == "false"
    (voice,) = customer_app.to("/voice")
    (child,) = await child_records(server, voice.form["CallSid"])
    assert child["status"] == "busy" and child["sid"] == form["DialCallSid"]


async def test_dial_no_answer_cancels(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    phone = Phone(asyncio.get_running_loop())
    try:
        async with Sipp(scenario("uas_noanswer"), workdir=tmp_path, timeout=15) as uas:
            customer_app.route("/voice", dial_twiml(f"sip:nobody@127.0.0.1:{uas.local_port}", timeout=2))
            customer_app.route("/dialed", hangup)
            result = await sipp_caller(tmp_path, sip_address(server), phone.port).run()
        result.check(calls=1)
        assert uas.result is not None
        uas.result.check(calls=1)  # it got our CANCEL and the ACK of its 487
        assert uas.result.row("CANCEL", direction="recv").messages == 1
    finally:
        phone.close()
    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "no-answer"
    # The caller heard US ringback (440 + 480 Hz) while the callee rang.
    samples = phone.audio_from(0)
    assert audio.band_energy(samples[:8000], 8000, 440.0) > audio.band_energy(samples[:8000], 8000, 1000.0)
    (voice,) = customer_app.to("/voice")
    (child,) = await child_records(server, voice.form["CallSid"])
    assert child["status"] == "no-answer"


async def test_caller_cancels_while_ringing(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    async with Sipp(scenario("uas_noanswer"), workdir=tmp_path, timeout=15) as uas:
        customer_app.route("/voice", dial_twiml(f"sip:nobody@127.0.0.1:{uas.local_port}", timeout=20))
        customer_app.route("/dialed", hangup)
        # The interpreter answers the caller before <Dial>, so the caller hangs up with a BYE
        # (not a CANCEL) while the callee still rings.
        path = derive_scenario(
            "uac_pcap_g711a",
            tmp_path,
            {'pause milliseconds="7300"': 'pause milliseconds="1500"'},
            name="quit",
        )
        caller = Sipp(path, remote=sip_address(server), workdir=tmp_path, service="+15551230000", timeout=20)
        result = await caller.run()
    result.check(calls=1)
    assert uas.result is not None
    uas.result.check(calls=1)
    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "canceled"
    (voice,) = customer_app.to("/voice")
    (child,) = await child_records(server, voice.form["CallSid"])
    assert child["status"] == "canceled"


async def test_parallel_dial_busy_and_answer(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    loop = asyncio.get_running_loop()
    caller_phone, callee_phone = Phone(loop), Phone(loop)
    try:
        async with (
            Sipp(scenario("uas_busy"), workdir=tmp_path, timeout=15) as busy,
            callee(tmp_path, callee_phone.port, hold_ms=2500) as answer,
        ):

            def build(dial: Dial) -> None:
                dial.sip(f"sip:busy@127.0.0.1:{busy.local_port}")
                dial.sip(f"sip:answer@127.0.0.1:{answer.local_port}")

            customer_app.route("/voice", dial_twiml("", build=build, timeout=10))
            customer_app.route("/dialed", hangup)
            # Same codec on both legs: the bridge relays packets as they arrive, so each side talks.
            result = await call_with_talkers(tmp_path, server, customer_app, caller_phone, callee_phone, 3.0)
        result.check(calls=1)
        assert heard(caller_phone, CALLEE_HZ)
        assert heard(callee_phone, CALLER_HZ)
    finally:
        caller_phone.close()
        callee_phone.close()
    (action,) = await customer_app.wait_for("/dialed")
    form = action.form
    assert form["DialCallStatus"] == "completed" and form["DialBridged"] == "true"
    (voice,) = customer_app.to("/voice")
    children = await child_records(server, voice.form["CallSid"])
    by_to = {c["to"]: c for c in children}
    assert by_to[f"sip:busy@127.0.0.1:{busy.local_port}"]["status"] == "busy"
    winner = by_to[f"sip:answer@127.0.0.1:{answer.local_port}"]
    assert winner["status"] == "completed" and winner["sid"] == form["DialCallSid"]


async def test_record_from_answer_dual(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    loop = asyncio.get_running_loop()
    caller_phone, callee_phone = Phone(loop), Phone(loop)
    try:
        async with callee(tmp_path, callee_phone.port, hold_ms=3500) as uas:
            customer_app.route(
                "/voice",
                dial_twiml(f"sip:bob@127.0.0.1:{uas.local_port}", record="record-from-answer-dual"),
            )
            customer_app.route("/dialed", hangup)
            result = await call_with_talkers(tmp_path, server, customer_app, caller_phone, callee_phone, 4.0)
        result.check(calls=1)
        assert heard(caller_phone, CALLEE_HZ) and heard(callee_phone, CALLER_HZ)
    finally:
        caller_phone.close()
        callee_phone.close()
    (action,) = await customer_app.wait_for("/dialed")
    form = action.form
    assert form["RecordingSid"].startswith("RE")
    assert form["RecordingUrl"].endswith(f"/Recordings/{form['RecordingSid']}")
    assert 2 <= int(form["RecordingDuration"]) <= 5
    record = await server.store.get("recordings", sid=form["RecordingSid"])
    assert record is not None
    assert record["channels"] == 2 and record["source"] == "DialVerb"
    samples, rate = soundfile.read(record["_path"], dtype="int16")
    assert rate == 8000 and samples.ndim == 2 and samples.shape[1] == 2
    caller_side, callee_side = np.ascontiguousarray(samples[:, 0]), np.ascontiguousarray(samples[:, 1])
    assert abs(audio.dominant_frequency(caller_side, rate) - CALLER_HZ) < 20
    assert abs(audio.dominant_frequency(callee_side, rate) - CALLEE_HZ) < 20


def star_packets(phone: Phone) -> list[bytes]:
    """RFC 4733 packets of one ``*`` (event 10): start, updates, three end packets, one timestamp."""
    packets = []
    durations = [160, 320, 480, 640, 800, 800, 800]
    for i, duration in enumerate(durations):
        end = i >= 4
        payload = struct.pack("!BBH", 10, (0x80 if end else 0) | 10, duration)
        packets.append(phone.packet(payload, payload_type=101, marker=i == 0, advance=0))
    phone.ts = (phone.ts + 800) & 0xFFFFFFFF
    return packets


async def test_hangup_on_star_then_twiml_continues(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    loop = asyncio.get_running_loop()
    caller_phone, callee_phone = Phone(loop), Phone(loop)

    async def press_star() -> None:
        await talk(caller_phone, CALLER_HZ, 2.0, lambda: caller_port(server, customer_app))
        port = caller_port(server, customer_app)
        assert port is not None
        await caller_phone.send_paced(star_packets(caller_phone), ("127.0.0.1", port))

    try:
        async with callee(tmp_path, callee_phone.port, hold_ms=None) as uas:
            customer_app.route(
                "/voice", dial_twiml(f"sip:bob@127.0.0.1:{uas.local_port}", hangup_on_star=True)
            )
            customer_app.route("/dialed", hangup)
            talker = loop.create_task(press_star())
            result = await sipp_caller(tmp_path, sip_address(server), caller_phone.port).run()
            talker.cancel()
        result.check(calls=1)
        assert uas.result is not None
        uas.result.check(calls=1)  # the callee got our BYE
    finally:
        caller_phone.close()
        callee_phone.close()
    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "completed"
    assert 1 <= int(action.form["DialCallDuration"]) <= 5


async def test_time_limit(tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    phone = Phone(asyncio.get_running_loop())
    try:
        async with callee(tmp_path, phone.port, hold_ms=None) as uas:
            customer_app.route("/voice", dial_twiml(f"sip:bob@127.0.0.1:{uas.local_port}", time_limit=2))
            customer_app.route("/dialed", hangup)
            result = await sipp_caller(tmp_path, sip_address(server), phone.port, name="tl").run()
        result.check(calls=1)
        assert uas.result is not None
        uas.result.check(calls=1)
    finally:
        phone.close()
    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "completed"
    assert 1 <= int(action.form["DialCallDuration"]) <= 3


async def test_early_media_relayed_then_busy(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    write_tone_pcap(tmp_path / "tone.pcap", 1000.0, seconds=2.0)
    phone = Phone(asyncio.get_running_loop())
    try:
        async with Sipp(scenario("uas_early_media"), workdir=tmp_path, timeout=15) as uas:
            customer_app.route("/voice", dial_twiml(f"sip:announce@127.0.0.1:{uas.local_port}"))
            customer_app.route("/dialed", hangup)
            result = await sipp_caller(tmp_path, sip_address(server), phone.port).run()
        result.check(calls=1)
        assert uas.result is not None
        uas.result.check(calls=1)
    finally:
        phone.close()
    assert heard(phone, 1000.0), "the callee's early media did not reach the caller"
    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "busy"
    assert action.form["DialSipResponseCode"] == "486"


async def test_caller_hangup_ends_the_bridge(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    async with callee(tmp_path, 40000, hold_ms=None) as uas:
        customer_app.route("/voice", dial_twiml(f"sip:bob@127.0.0.1:{uas.local_port}"))
        customer_app.route("/dialed", hangup)
        path = derive_scenario(
            "uac_pcap_g711a",
            tmp_path,
            {'pause milliseconds="7300"': 'pause milliseconds="2500"'},
            name="quits",
        )
        caller = Sipp(path, remote=sip_address(server), workdir=tmp_path, service="+15551230000", timeout=20)
        result = await caller.run()
    result.check(calls=1)
    assert uas.result is not None
    uas.result.check(calls=1)  # the callee got our BYE
    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "completed"
    assert action.form["DialBridged"] == "true"
    assert 1 <= int(action.form["DialCallDuration"]) <= 4


async def test_whisper_hangup_leaves_the_call_unbridged(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    phone = Phone(asyncio.get_running_loop())

    def screen(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("Call screening: rejected.")
        response.hangup()
        return twiml(response)

    try:
        async with callee(tmp_path, phone.port, hold_ms=None) as uas:
            target = f"sip:bob@127.0.0.1:{uas.local_port}"
            customer_app.route("/voice", dial_twiml(target, build=lambda d: d.sip(target, url="/screen")))
            customer_app.route("/screen", screen)
            customer_app.route("/dialed", hangup)
            result = await sipp_caller(tmp_path, sip_address(server), phone.port, name="screened").run()
        result.check(calls=1)
        assert uas.result is not None
        uas.result.check(calls=1)  # the screened callee got our BYE
    finally:
        phone.close()
    (screen_request,) = customer_app.to("/screen")
    assert screen_request.form["Direction"] == "outbound-dial"
    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "completed"
    assert action.form["DialBridged"] == "false"
    assert action.form["DialCallSid"] == screen_request.form["CallSid"]


async def test_sip_digest_auth_and_x_headers(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    phone = Phone(asyncio.get_running_loop())
    uas = Sipp(
        scenario("uas_invite_auth"),
        workdir=tmp_path,
        timeout=20,
        variables={"user": "pbx-user", "password": "s3cret"},
    )
    try:
        async with uas:
            target = f"sip:desk@127.0.0.1:{uas.local_port}?X-Team=blue&X-Ticket=42"
            customer_app.route(
                "/voice",
                dial_twiml(
                    target,
                    build=lambda d: d.sip(target, username="pbx-user", password="s3cret"),
                    time_limit=2,
                ),
            )
            customer_app.route("/dialed", hangup)
            result = await sipp_caller(tmp_path, sip_address(server), phone.port, name="authcaller").run()
        result.check(calls=1)
        assert uas.result is not None
        uas.result.check(calls=1)  # the digest was valid (else 403 and a failed call)
    finally:
        phone.close()
    log = next(tmp_path.glob("uas_invite_auth-*.messages.log")).read_text()
    assert "X-Team: blue" in log and "X-Ticket: 42" in log
    assert 'Authorization: Digest username="pbx-user"' in log
    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "completed"
    assert action.form["DialSipResponseCode"] == "200"
