"""Registry lookups by SDP name and factory behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from trunkline.codecs import CodecError, create_decoder, create_encoder, get_codec
from trunkline.codecs.g711 import G711Decoder, G711Encoder
from trunkline.codecs.g722 import G722Encoder
from trunkline.codecs.opus import OpusDecoder, OpusEncoder
from trunkline.codecs.registry import all_codecs, normalize_name


def test_lookup_is_case_insensitive_and_channel_default_is_one() -> None:
    assert get_codec("pcmu/8000") is get_codec("PCMU/8000") is get_codec("PCMU/8000/1")
    assert get_codec("PCMU/8000").payload_type == 0
    assert get_codec("pcma/8000").payload_type == 8
    assert get_codec("OPUS/48000/2").sdp_name == "opus/48000/2"
    assert normalize_name(" Opus / 48000 / 2 ") == "opus/48000/2"


def test_g722_clock_rate_quirk() -> None:
    info = get_codec("G722/8000")
    assert (info.clock_rate, info.sample_rate, info.payload_type) == (8000, 16000, 9)
    assert info.frame_samples == 320 and info.timestamp_step == 160


def test_codec_info_fields() -> None:
    opus = get_codec("opus/48000/2")
    assert opus.payload_type is None and opus.frame_samples == 960 and opus.timestamp_step == 960
    assert opus.fmtp_line() == "minptime=10;useinbandfec=1"
    te = get_codec("telephone-event/8000")
    assert te.fmtp_line() == "0-16" and te.frame_ms == 20
    assert {c.encoding for c in all_codecs()} >= {"PCMU", "PCMA", "G722", "opus", "telephone-event"}


def test_factories_build_working_codecs() -> None:
    enc = create_encoder("PCMA/8000")
    dec = create_decoder("pcma/8000")
    assert isinstance(enc, G711Encoder) and isinstance(dec, G711Decoder)
    pcm = np.full(160, 1000, np.int16)
    assert np.abs(dec.decode(enc.encode(pcm)).astype(int) - 1000).max() <= 32
    assert isinstance(create_encoder("G722/8000"), G722Encoder)
    stereo = create_encoder("opus/48000/2", stereo="1", maxaveragebitrate="24000", useinbandfec="1")
    assert isinstance(stereo, OpusEncoder) and stereo.channels == 2 and stereo.bitrate == 24000
    mono = create_decoder("opus/48000/2")
    assert isinstance(mono, OpusDecoder) and mono.channels == 1


def test_errors() -> None:
    with pytest.raises(CodecError, match="unknown codec"):
        get_codec("G729/8000")
    with pytest.raises(CodecError, match="ENCODING/CLOCK"):
        get_codec("PCMU")
    with pytest.raises(CodecError, match="no audio encoder"):
        create_encoder("telephone-event/8000")
    with pytest.raises(CodecError, match="no fmtp"):
        create_encoder("PCMU/8000", annexb="no")
