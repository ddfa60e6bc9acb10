"""E2E media proofs for DTMF into ``<Gather>``: SIPp plays the digits into a real call.

* RFC 4733 (2833) events: SIPp's own ``dtmf_2833_0.pcap`` .. ``dtmf_2833_9.pcap`` in turn, into
  ``<Gather numDigits="10">``: the app gets exactly ``0123456789`` (the existing gather test
  only covers ``1234``).
* In-band: a generated PCMU pcap with the DTMF tones ``159#`` (ITU-T Q.23 pairs) in white noise
  at 20 dB SNR, offered without telephone-event so Trunkline must run its Goertzel detector:
  the app gets exactly ``159``, finished by ``#``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web
from twilio.twiml.voice_response import Gather, VoiceResponse

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
from tests.peers.pcap import RtpPacket, UdpPacket, rtp_audio, write_pcap
from tests.peers.sipp import Sipp, derive_scenario, dtmf_2833_scenario

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

RATE = 8000
PTIME_SAMPLES = 160  # 20 ms packets


def gather_app(customer_app: CustomerApp, gather: Gather) -> None:
    """``/voice`` answers with ``gather``; ``/gather`` (its action) keeps the call up for the BYE."""

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.append(gather)
        response.say("We did not get your digits.")
        return twiml(response)

    def gathered(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.pause(length=10)  # SIPp hangs up
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/gather", gathered)


async def test_gather_gets_every_rfc2833_digit_from_sipp_pcaps(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    gather_app(customer_app, Gather(num_digits=10, action="/gather", timeout=5))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    path = dtmf_2833_scenario(tmp_path, "0123456789", gap_ms=300)
    uac = Sipp(path, remote=sip_address(server), workdir=tmp_path, service=NUMBER, timeout=25)
    (await uac.run()).check(calls=1)

    (first,) = customer_app.to("/voice")
    (action,) = await customer_app.wait_for("/gather", timeout=5)
    assert action.signature_valid()
    assert action.form["CallSid"] == first.form["CallSid"]
    assert action.form["Digits"] == "0123456789"
    assert "FinishedOnKey" not in action.form or action.form["FinishedOnKey"] == ""


def inband_dtmf_pcm(
    digits: str,
    *,
    snr_db: float,
    tone_ms: int = 120,
    gap_ms: int = 200,
    lead_ms: int = 1000,
    tail_ms: int = 1000,
    level_dbfs: float = -6.0,
    seed: int = 4733,
) -> npt.NDArray[np.int16]:
    """In-band DTMF for ``digits`` in continuous white Gaussian noise ``snr_db`` below the tones.

    SNR is the tones' mean power over the noise power (both measured, not nominal).
    """
    gap = np.zeros(RATE * gap_ms // 1000)
    parts = [np.zeros(RATE * lead_ms // 1000)]
    for digit in digits:
        parts += [audio.dtmf_tone(digit, tone_ms / 1000, RATE, level_dbfs).astype(np.float64), gap]
    parts.append(np.zeros(RATE * tail_ms // 1000))
    clean = np.concatenate(parts)
    tone_power = float(np.mean(clean[clean != 0] ** 2))
    noise = np.random.default_rng(seed).standard_normal(clean.size)
    noise *= math.sqrt(tone_power / 10 ** (snr_db / 10)) / noise.std()
    mixed: Any = np.round(clean + noise)  # numpy's stubs reject clip() on float arrays
    return np.asarray(mixed.clip(-32768, 32767), dtype=np.int16)


def write_pcmu_pcap(path: Path, pcm: npt.NDArray[np.int16], ssrc: int = 0x1B5D0001) -> Path:
    """``pcm`` as PCMU RTP (payload type 0, 20 ms packets) in a pcap for ``play_pcap_audio``."""
    src, dst = ("10.0.0.1", 40000), ("10.0.0.2", 40002)
    payload = audio.encode_pcmu(pcm[: pcm.size // PTIME_SAMPLES * PTIME_SAMPLES])
    packets = []
    for i in range(len(payload) // PTIME_SAMPLES):
        chunk = payload[i * PTIME_SAMPLES : (i + 1) * PTIME_SAMPLES]
        rtp = RtpPacket(0.0, src, dst, 0, i == 0, i, i * PTIME_SAMPLES, ssrc, chunk)
        packets.append(UdpPacket(i * PTIME_SAMPLES / RATE, src, dst, rtp.serialize()))
    return write_pcap(path, packets)


def test_inband_pcap_generator_holds_the_digits_at_the_snr(tmp_path: Path) -> None:
    pcm = inband_dtmf_pcm("159#", snr_db=20.0, lead_ms=500, tail_ms=500)
    decoded = rtp_audio(write_pcmu_pcap(tmp_path / "d.pcap", pcm), payload_type=0)
    assert decoded.size == pcm.size // PTIME_SAMPLES * PTIME_SAMPLES
    step = RATE * 320 // 1000  # tone 120 ms + gap 200 ms
    start = RATE // 2
    seen = [audio.detect_dtmf(decoded[start + i * step : start + i * step + 960]) for i in range(4)]
    assert "".join(d or "?" for d in seen) == "159#"
    noise = decoded[: RATE // 2].astype(np.float64)
    tone = decoded[start : start + 960].astype(np.float64)
    snr = 10 * math.log10(np.mean(tone**2) / np.mean(noise**2))
    assert 19.0 < snr < 21.5, snr  # 20 dB, plus the tone's own share of the mixture
    assert audio.detect_dtmf(noise) is None


async def test_gather_gets_inband_digits_in_noise(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    pcm = inband_dtmf_pcm("159#", snr_db=20.0)
    write_pcmu_pcap(tmp_path / "pcmu.pcap", pcm)
    gather_app(customer_app, Gather(finish_on_key="#", action="/gather", timeout=5))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    seconds = pcm.size / RATE
    path = derive_scenario(
        "uac_pcap_pcmu",
        tmp_path,
        {'pause milliseconds="4000"': f'pause milliseconds="{round(seconds * 1000) + 1000}"'},
    )
    uac = Sipp(path, remote=sip_address(server), workdir=tmp_path, service=NUMBER, timeout=20)
    (await uac.run()).check(calls=1)

    (first,) = customer_app.to("/voice")
    (action,) = await customer_app.wait_for("/gather", timeout=5)
    assert action.signature_valid()
    assert action.form["CallSid"] == first.form["CallSid"]
    assert action.form["Digits"] == "159"
    assert action.form["FinishedOnKey"] == "#"
    # The '#' is the last tone, 1.28 s after the first one and 2.3 s into the stream.
    assert action.time - first.time < seconds + 1.0
