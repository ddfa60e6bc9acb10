"""E2E media proofs for ``<Record>``: SIPp streams a pcap into a real call and the recording holds it.

* SIPp's own ``g711a.pcap`` (7.1 s of A-law speech, 30 ms packets) recorded with
  ``playBeep="false"``: the downloaded WAV matches the pcap's payloads decoded independently
  (``audioop.alaw2lin``) with a correlation above 0.9 at the best lag.
* A generated PCMU tone (1,300 Hz, 20 ms packets): the recording's spectrum peaks there.
"""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (
    NUMBER,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.peers import audio
from tests.peers.pcap import rtp_payloads, write_tone_pcap
from tests.peers.sipp import PCAP_DIR, Sipp, derive_scenario, scenario

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

G711A_PCAP = PCAP_DIR / "g711a.pcap"
TONE_HZ = 1300.0
WINDOW = 2000  # 0.25 s at 8 kHz


def record_app(customer_app: CustomerApp, *, max_length: int, timeout: int) -> None:
    """``/voice`` answers ``<Record playBeep="false">``; ``/recorded`` (the action) ends the document."""

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.record(action="/recorded", play_beep=False, max_length=max_length, timeout=timeout)
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/recorded", lambda r: twiml(VoiceResponse()))


async def download(url: str) -> tuple[np.ndarray, int]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.content_type in ("audio/wav", "audio/x-wav"), response.content_type
        data = await response.read()
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    return np.asarray(samples, dtype=np.int16), int(rate)


def loud_span(samples: np.ndarray, threshold_dbfs: float = -20.0) -> np.ndarray:
    """From the first to the last 20 ms frame whose RMS exceeds ``threshold_dbfs``."""
    frames = samples[: samples.size // 160 * 160].reshape(-1, 160).astype(np.float64)
    rms = np.sqrt((frames * frames).mean(axis=1))
    loud = np.flatnonzero(rms > 32768.0 * 10 ** (threshold_dbfs / 20))
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0] * 160 : (loud[-1] + 1) * 160]


def pcap_reference(path: Path, payload_type: int) -> np.ndarray:
    """The pcap's RTP payloads in sequence order, decoded with ``audioop`` (not the product)."""
    packets = rtp_payloads(path, payload_type=payload_type)
    assert packets, f"no RTP with payload type {payload_type} in {path}"
    packets.sort(key=lambda p: p.time)
    return audio.decode_g711(b"".join(p.payload for p in packets), payload_type)


async def test_record_of_sipp_g711a_pcap_matches_its_payloads(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    record_app(customer_app, max_length=20, timeout=10)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    # SIPp plays the pcap right after the 200, then sends BYE 7.3 s later: the hangup ends <Record>.
    uac = Sipp(
        scenario("uac_pcap_g711a"), remote=sip_address(server), workdir=tmp_path, service=NUMBER, timeout=20
    )
    (await uac.run()).check(calls=1)

    (action,) = await customer_app.wait_for("/recorded")
    assert action.signature_valid()
    assert action.form["Digits"] == "hangup"
    duration = int(action.form["RecordingDuration"])
    assert 5 <= duration <= 8, duration

    recorded, rate = await download(action.form["RecordingUrl"])
    assert rate == 8000
    assert recorded.size >= 5 * rate, f"only {recorded.size / rate:.2f} s recorded"
    reference = pcap_reference(G711A_PCAP, 8)
    assert reference.size == 236 * 240  # 7.08 s of speech in 30 ms packets
    whole = audio.correlation(reference, recorded)
    # Idle, the whole recording matches the pcap (0.9999 at one lag).  On a starved machine the
    # jitter buffer now and then drops a late packet or conceals a missing one, which slips the
    # rest of the audio by a packet or two; so each 0.25 s stretch must match on its own, at
    # about the same place: where the recording starts in the pcap.
    offsets = []
    for start in range(0, recorded.size - WINDOW + 1, WINDOW):
        part = recorded[start : start + WINDOW]
        if audio.rms_dbfs(part) < -45:
            continue  # a pause in the speech matches anything equally badly
        match = audio.correlation(reference, part)
        offsets.append((match.coefficient, -match.lag - start))
    matched = [offset for coefficient, offset in offsets if coefficient > 0.9]
    assert len(offsets) >= 16, f"only {len(offsets)} voiced 0.25 s windows"
    assert len(matched) >= 0.8 * len(offsets), (whole, offsets)
    # The recording starts after the answer and the webhook round trip: it is late against the
    # pcap (by at most a second), never early by more than a packet, and slips stay small.
    start_in_pcap = int(np.median(matched))
    assert -240 <= start_in_pcap <= 8000, (whole, offsets)
    assert all(abs(offset - start_in_pcap) <= 2400 for offset in matched), (whole, offsets)
    # Same level as sent: G.711 decoded by the product's tables equals audioop's decode.
    assert abs(audio.rms_dbfs(recorded[recorded != 0]) - audio.rms_dbfs(reference)) < 3.0


async def test_record_of_generated_pcmu_tone_peaks_at_its_frequency(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    write_tone_pcap(tmp_path / "pcmu.pcap", TONE_HZ, seconds=3.0, codec="PCMU", level_dbfs=-8.0)
    record_app(customer_app, max_length=20, timeout=10)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    path = derive_scenario(
        "uac_pcap_pcmu", tmp_path, {'pause milliseconds="4000"': 'pause milliseconds="3500"'}
    )
    uac = Sipp(path, remote=sip_address(server), workdir=tmp_path, service=NUMBER, timeout=20)
    (await uac.run()).check(calls=1)

    (action,) = await customer_app.wait_for("/recorded")
    assert action.signature_valid()
    recorded, rate = await download(action.form["RecordingUrl"])
    assert rate == 8000
    assert 2.0 * rate <= recorded.size <= 4.5 * rate, recorded.size / rate
    loud = loud_span(recorded)
    assert loud.size >= 2.0 * rate, f"only {loud.size / rate:.2f} s of the tone reached the recording"
    assert abs(audio.dominant_frequency(recorded, rate) - TONE_HZ) < 10
    assert audio.contains_tone(loud, rate, TONE_HZ, width=40.0, min_fraction=0.95)
    assert -12.5 < audio.rms_dbfs(loud) < -9.5  # the -8 dBFS peak sine is -11 dBFS RMS
