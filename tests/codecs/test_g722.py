"""G.722 through PyAV: 320 samples <-> 160 bytes, delay, wideband fidelity, concealment."""

from __future__ import annotations

import numpy as np
import pytest

from tests.codecs._signals import best_lag, chirp, peak_hz, rms, sine
from trunkline.codecs.base import CodecError
from trunkline.codecs.g722 import G722_DELAY_SAMPLES, G722Decoder, G722Encoder


def run(pcm: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    enc, dec = G722Encoder(), G722Decoder()
    payloads = [enc.encode(pcm[i : i + 320]) for i in range(0, len(pcm), 320)]
    return payloads, np.concatenate([dec.decode(p) for p in payloads])


@pytest.mark.parametrize("freq", [1000, 6000])
def test_tone_round_trip_frequency_and_level(freq: int) -> None:
    pcm = sine(freq, 320 * 30, 16000)
    payloads, out = run(pcm)
    assert all(len(p) == 160 for p in payloads) and len(payloads) == 30
    steady = out[3200:]
    assert abs(peak_hz(steady, 16000) - freq) <= 5
    assert abs(20 * np.log10(rms(steady) / rms(pcm))) < 1.0


def test_decoder_delay_is_constant() -> None:
    pcm = chirp(320 * 40, 16000)
    _, out = run(pcm)
    assert best_lag(out, pcm, 100, 8000) == G722_DELAY_SAMPLES


def test_conceal_fades_out() -> None:
    enc, dec = G722Encoder(), G722Decoder()
    pcm = sine(800, 320 * 5, 16000)
    for i in range(5):
        dec.decode(enc.encode(pcm[i * 320 : (i + 1) * 320]))
    first = dec.conceal(320)
    assert rms(first) > 0.5 * rms(pcm)
    later = [dec.conceal(320) for _ in range(3)]
    assert rms(later[0]) < rms(first) and np.all(later[-1] == 0)


def test_errors() -> None:
    with pytest.raises(CodecError, match="empty"):
        G722Decoder().decode(b"")
    with pytest.raises(CodecError, match="shape"):
        G722Encoder().encode(np.zeros(160, np.int16))
