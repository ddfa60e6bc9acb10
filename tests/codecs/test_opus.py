"""Opus through PyAV: framing, delay, tone fidelity, stereo, PLC, DTX, FEC option."""

from __future__ import annotations

import numpy as np
import pytest

from tests.codecs._signals import best_lag, chirp, peak_hz, rms, sine
from trunkline.codecs.base import CodecError
from trunkline.codecs.opus import OPUS_DELAY_SAMPLES, OpusDecoder, OpusEncoder, opus_delay_samples


def run(enc: OpusEncoder, dec: OpusDecoder, pcm: np.ndarray) -> np.ndarray:
    n = enc.frame_samples
    out = []
    for i in range(pcm.shape[0] // n):
        payload = enc.encode(pcm[i * n : (i + 1) * n])
        assert payload, "one packet per frame"
        frame = dec.decode(payload)
        assert frame.shape[0] == n
        out.append(frame)
    return np.concatenate(out)


def test_1khz_tone_survives_with_right_frequency_and_level() -> None:
    pcm = sine(1000, 960 * 50, 48000, amplitude=10000)
    out = run(OpusEncoder(bitrate=32000), OpusDecoder(), pcm)
    assert out.shape == (960 * 50,) and out.dtype == np.int16
    steady = out[960 * 10 :]
    assert abs(peak_hz(steady, 48000) - 1000) <= 5
    level_db = 20 * np.log10(rms(steady) / rms(pcm))
    assert abs(level_db) < 1.0


def test_constant_delay_is_the_encoder_lookahead() -> None:
    pcm = chirp(960 * 40, 48000)
    out = run(OpusEncoder(bitrate=64000, application="audio"), OpusDecoder(), pcm)
    assert best_lag(out, pcm, 600, 20000) == OPUS_DELAY_SAMPLES


def test_stereo_keeps_channels_apart() -> None:
    left, right = sine(700, 960 * 30, 48000), sine(2500, 960 * 30, 48000)
    pcm = np.stack([left, right], axis=1)
    enc, dec = OpusEncoder(channels=2, bitrate=64000, application="audio"), OpusDecoder(channels=2)
    out = run(enc, dec, pcm)
    assert out.shape == (960 * 30, 2)
    assert abs(peak_hz(out[9600:, 0], 48000) - 700) <= 5
    assert abs(peak_hz(out[9600:, 1], 48000) - 2500) <= 5


def test_plc_continues_the_tone_then_decoding_resumes() -> None:
    enc, dec = OpusEncoder(), OpusDecoder()
    assert np.all(dec.conceal(960) == 0)  # nothing decoded yet: silence
    pcm = sine(1000, 960 * 12, 48000, amplitude=10000)
    run(enc, dec, pcm[: 960 * 10])
    lost = dec.conceal(960)
    assert lost.shape == (960,)
    assert abs(peak_hz(lost, 48000) - 1000) <= 10 and rms(lost) > 0.3 * rms(pcm)
    enc.encode(pcm[960 * 10 : 960 * 11])  # the lost packet
    after = dec.decode(enc.encode(pcm[960 * 11 :]))
    assert after.shape == (960,) and abs(peak_hz(after, 48000) - 1000) <= 10


def test_dtx_suppresses_silent_frames_but_refreshes() -> None:
    enc = OpusEncoder(dtx=True)
    silence = np.zeros(960, np.int16)
    sent = [bool(enc.encode(silence)) for _ in range(60)]
    assert all(sent[: OpusEncoder.DTX_HANGOVER])
    assert sent.count(True) == OpusEncoder.DTX_HANGOVER + 2  # refresh at quiet 20 and 40
    assert enc.encode(sine(1000, 960, 48000)) != b""
    plain = OpusEncoder()
    assert all(plain.encode(silence) for _ in range(30))


def test_fec_option_changes_the_bitstream() -> None:
    noise = np.random.default_rng(3).normal(0, 3000, 960 * 20).astype(np.int16)
    a, b = OpusEncoder(bitrate=24000), OpusEncoder(bitrate=24000, fec=True, packet_loss=30)
    frames = [noise[i * 960 : (i + 1) * 960] for i in range(20)]
    assert [a.encode(f) for f in frames] != [b.encode(f) for f in frames]
    via_fmtp = OpusEncoder(useinbandfec="1", maxaveragebitrate="20000")
    assert via_fmtp.bitrate == 20000


def test_invalid_arguments_and_packets() -> None:
    with pytest.raises(CodecError, match="bitrate"):
        OpusEncoder(bitrate=1000)
    with pytest.raises(CodecError, match="channels"):
        OpusEncoder(channels=3)
    with pytest.raises(CodecError, match="unknown Opus parameters"):
        OpusEncoder(foo="1")
    with pytest.raises(CodecError, match="shape"):
        OpusEncoder().encode(np.zeros(480, np.int16))
    dec = OpusDecoder()
    with pytest.raises(CodecError, match="empty"):
        dec.decode(b"")
    with pytest.raises(CodecError, match="invalid Opus packet"):
        dec.decode(b"\xff\xff\xff")


@pytest.mark.parametrize("rate", [8000, 16000])
def test_narrowband_rates_keep_tone_level_and_constant_delay(rate: int) -> None:
    frame = rate // 50
    enc, dec = OpusEncoder(sample_rate=rate), OpusDecoder(sample_rate=rate)
    assert enc.frame_samples == dec.frame_samples == frame
    pcm = sine(1000, frame * 50, rate, amplitude=10000)
    out = run(enc, dec, pcm)
    assert out.shape == (frame * 50,) and out.dtype == np.int16
    steady = out[frame * 10 :]
    assert abs(peak_hz(steady, rate) - 1000) <= 5
    assert abs(20 * np.log10(rms(steady) / rms(pcm))) < 1.0
    delay = opus_delay_samples(rate)
    assert delay == OPUS_DELAY_SAMPLES * rate // 48000
    sweep = chirp(frame * 40, rate)
    out = run(
        OpusEncoder(sample_rate=rate, bitrate=64000, application="audio"),
        OpusDecoder(sample_rate=rate),
        sweep,
    )
    assert best_lag(out, sweep, 200, frame * 30) == delay


def test_narrowband_packets_decode_at_48k_and_back() -> None:
    """RFC 7587: the bitstream does not depend on the PCM rate of either end."""
    pcm8 = sine(440, 160 * 30, 8000, amplitude=8000)
    enc8 = OpusEncoder(sample_rate=8000)
    dec48 = OpusDecoder()
    out48 = np.concatenate([dec48.decode(enc8.encode(f)) for f in pcm8.reshape(-1, 160)])
    assert out48.shape == (960 * 30,)
    assert abs(peak_hz(out48[960 * 5 :], 48000) - 440) <= 5
    enc48, dec8 = OpusEncoder(), OpusDecoder(sample_rate=8000)
    pcm48 = sine(700, 960 * 30, 48000, amplitude=8000)
    out8 = np.concatenate([dec8.decode(enc48.encode(f)) for f in pcm48.reshape(-1, 960)])
    assert out8.shape == (160 * 30,)
    assert abs(peak_hz(out8[160 * 5 :], 8000) - 700) <= 10


def test_complexity_and_rate_are_validated() -> None:
    assert OpusEncoder().complexity == 5
    assert OpusEncoder(complexity=10).complexity == 10
    with pytest.raises(CodecError, match="complexity"):
        OpusEncoder(complexity=11)
    with pytest.raises(CodecError, match="sample rate"):
        OpusEncoder(sample_rate=44100)
    with pytest.raises(CodecError, match="sample rate"):
        OpusDecoder(sample_rate=22050)
    assert OpusDecoder(sample_rate=16000).conceal(320).shape == (320,)
