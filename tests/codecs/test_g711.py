"""G.711 tables against CPython's audioop reference, batch API and concealment."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from trunkline.codecs.base import CodecError
from trunkline.codecs.g711 import (
    ALAW_TO_ULAW,
    ULAW_TO_ALAW,
    G711Decoder,
    G711Encoder,
    alaw_decode,
    alaw_encode,
    alaw_to_ulaw,
    ulaw_decode,
    ulaw_encode,
    ulaw_to_alaw,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_PCM = np.arange(65536, dtype=np.uint16).view(np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


def test_ulaw_encode_matches_audioop_for_every_int16() -> None:
    assert ulaw_encode(ALL_PCM).tobytes() == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)


def test_alaw_encode_matches_audioop_for_every_int16() -> None:
    assert alaw_encode(ALL_PCM).tobytes() == audioop.lin2alaw(ALL_PCM.tobytes(), 2)


def test_ulaw_decode_matches_audioop_for_every_code() -> None:
    assert ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES.tobytes(), 2)


def test_alaw_decode_matches_audioop_for_every_code() -> None:
    assert alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES.tobytes(), 2)


def test_known_code_points() -> None:
    # G.711: µ-law 0xFF and A-law 0xD5 are the smallest positive levels; 0x80 / 0xAA peaks.
    assert ulaw_decode(np.array([0xFF, 0x7F, 0x80, 0x00], np.uint8)).tolist() == [0, 0, 32124, -32124]
    assert alaw_decode(np.array([0xD5, 0x55, 0xAA, 0x2A], np.uint8)).tolist() == [8, -8, 32256, -32256]
    assert ulaw_encode(np.array([0], np.int16)).tolist() == [0xFF]
    assert alaw_encode(np.array([0], np.int16)).tolist() == [0xD5]


def test_transcoding_tables_equal_decode_then_encode() -> None:
    assert np.array_equal(ULAW_TO_ALAW, alaw_encode(ulaw_decode(ALL_CODES)))
    assert np.array_equal(ALAW_TO_ULAW, ulaw_encode(alaw_decode(ALL_CODES)))
    ref = audioop.lin2alaw(audioop.ulaw2lin(ALL_CODES.tobytes(), 2), 2)
    assert ulaw_to_alaw(ALL_CODES.tobytes()).tobytes() == ref
    assert alaw_to_ulaw(ALL_CODES).tobytes() == audioop.lin2ulaw(audioop.alaw2lin(ALL_CODES.tobytes(), 2), 2)


def test_batch_shape_and_per_stream_identity() -> None:
    rng = np.random.default_rng(7)
    pcm = rng.integers(-32768, 32768, size=(300, 160)).astype(np.int16)
    codes = ulaw_encode(pcm)
    assert codes.shape == (300, 160) and codes.dtype == np.uint8
    back = ulaw_decode(codes)
    assert back.shape == (300, 160) and back.dtype == np.int16
    for i in (0, 123, 299):
        assert codes[i].tobytes() == audioop.lin2ulaw(pcm[i].tobytes(), 2)
        assert alaw_encode(pcm)[i].tobytes() == audioop.lin2alaw(pcm[i].tobytes(), 2)
    # Decoding is idempotent after one round trip (quantisation is a projection).
    assert np.array_equal(ulaw_decode(ulaw_encode(back)), back)


def test_pair_and_single_lookup_paths_agree() -> None:
    codes = np.random.default_rng(1).integers(0, 256, size=(50, 160)).astype(np.uint8)
    for decode, ref in ((ulaw_decode, audioop.ulaw2lin), (alaw_decode, audioop.alaw2lin)):
        assert decode(codes).tobytes() == ref(codes.tobytes(), 2)  # pair-table path
        odd = codes[:, :159]  # odd length and not contiguous: single-code path
        assert decode(odd).tobytes() == ref(np.ascontiguousarray(odd).tobytes(), 2)
        assert decode(codes[:, ::2]).tobytes() == ref(np.ascontiguousarray(codes[:, ::2]).tobytes(), 2)
        assert decode(codes[7].tobytes()).tobytes() == ref(codes[7].tobytes(), 2)


def test_wrong_dtypes_are_rejected() -> None:
    with pytest.raises(CodecError, match="int16"):
        ulaw_encode(np.zeros(160, np.int32))  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="uint8"):
        alaw_decode(np.zeros(160, np.int16))  # type: ignore[arg-type]


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_encoder_decoder_classes_round_trip(law: str) -> None:
    enc, dec = G711Encoder(law), G711Decoder(law)
    t = np.arange(160) / 8000
    pcm = (10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    payload = enc.encode(pcm)
    assert len(payload) == 160
    out = dec.decode(payload)
    assert out.shape == (160,)
    # G.711 keeps roughly 38 dB SNR on a loud sine.
    err = out.astype(float) - pcm
    assert 10 * np.log10(np.mean(pcm.astype(float) ** 2) / np.mean(err**2)) > 30
    with pytest.raises(CodecError, match="shape"):
        enc.encode(np.zeros(80, np.int16))


def test_concealment_repeats_last_10ms_and_fades_to_silence() -> None:
    dec = G711Decoder("ulaw")
    t = np.arange(160) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 400 * t)).astype(np.int16)  # 400 Hz: 10 ms = 4 periods
    good = dec.decode(bytes(ulaw_encode(pcm)))
    plc = dec.conceal(160)
    tail = good[-80:].astype(float)
    # First 10 ms of concealment follow the last 10 ms closely (gain starts near 1).
    assert np.corrcoef(plc[:80], tail)[0, 1] > 0.99
    assert np.abs(plc[:80]).max() > 0.8 * np.abs(tail).max()
    more = np.concatenate([dec.conceal(160), dec.conceal(160)])  # 20..60 ms into the erasure
    levels = [np.abs(x).max() for x in (plc[:80], more[:80], more[160:240])]
    assert levels[0] > levels[1] > levels[2]
    assert np.all(dec.conceal(160) == 0)  # beyond 60 ms: silence


def test_good_frame_after_erasure_is_crossfaded() -> None:
    dec = G711Decoder("alaw")
    dec.decode(bytes(alaw_encode(np.full(160, 4000, np.int16))))
    dec.conceal(160)
    out = dec.decode(bytes(alaw_encode(np.full(160, -4000, np.int16))))
    # The first samples blend from the concealed level towards the new one, no step.
    assert out[0] > 0 and out[40] < -3500
    assert np.all(np.diff(out[:33].astype(int)) <= 0)
