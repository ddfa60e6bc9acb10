"""Codec registry keyed by SDP ``rtpmap`` name (``PCMU/8000``, ``opus/48000/2``, ...).

Names are matched case-insensitively (RFC 4566 section 6: encoding names are case-insensitive)
and a missing channel count means one channel (RFC 4566 ``a=rtpmap``), except that Opus is
always announced as ``opus/48000/2`` (RFC 7587 section 7) whatever it actually carries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

from trunkline.codecs.base import CodecError, CodecInfo, Decoder, Encoder

__all__ = [
    "CodecInfo",
    "all_codecs",
    "create_decoder",
    "create_encoder",
    "get_codec",
    "normalize_name",
    "register_codec",
]

EncoderFactory = Callable[..., Encoder]
DecoderFactory = Callable[..., Decoder]

_INFOS: dict[str, CodecInfo] = {}
_FACTORIES: dict[str, tuple[EncoderFactory | None, DecoderFactory | None]] = {}


def normalize_name(name: str) -> str:
    """Canonical lower-case ``encoding/clock/channels`` key for an rtpmap name."""
    parts = [p.strip() for p in name.strip().split("/")]
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].isdigit():
        raise CodecError(f"codec name must look like 'ENCODING/CLOCK[/CHANNELS]', got {name!r}")
    channels = parts[2] if len(parts) == 3 else "1"
    if not channels.isdigit():
        raise CodecError(f"codec channel count must be a number, got {name!r}")
    return f"{parts[0].lower()}/{int(parts[1])}/{int(channels)}"


def register_codec(info: CodecInfo, encoder: EncoderFactory | None, decoder: DecoderFactory | None) -> None:
    """Add (or replace) a codec; factories take the fmtp parameters as keyword arguments."""
    key = normalize_name(info.sdp_name)
    _INFOS[key] = info
    _FACTORIES[key] = (encoder, decoder)


def get_codec(name: str) -> CodecInfo:
    """Look a codec up by its SDP name, e.g. ``get_codec("pcmu/8000")``."""
    try:
        return _INFOS[normalize_name(name)]
    except KeyError:
        raise CodecError(f"unknown codec {name!r}") from None


def all_codecs() -> Iterator[CodecInfo]:
    """Every registered codec, in registration (= default preference) order."""
    return iter(list(_INFOS.values()))


def create_encoder(name: str, **fmtp: Any) -> Encoder:
    """Build a fresh encoder for one stream, passing fmtp parameters as keywords."""
    factory = _FACTORIES.get(normalize_name(name), (None, None))[0]
    if factory is None:
        raise CodecError(f"codec {name!r} has no audio encoder")
    return factory(**fmtp)


def create_decoder(name: str, **fmtp: Any) -> Decoder:
    """Build a fresh decoder for one stream, passing fmtp parameters as keywords."""
    factory = _FACTORIES.get(normalize_name(name), (None, None))[1]
    if factory is None:
        raise CodecError(f"codec {name!r} has no audio decoder")
    return factory(**fmtp)


def _register_builtins() -> None:
    from trunkline.codecs.g711 import G711Decoder, G711Encoder
    from trunkline.codecs.g722 import G722Decoder, G722Encoder
    from trunkline.codecs.opus import OpusDecoder, OpusEncoder

    def opus_channels(fmtp: dict[str, Any]) -> int:
        # RFC 7587 section 7.1: stereo=1 asks for stereo; the default is mono.
        return 2 if str(fmtp.pop("stereo", "0")) == "1" else 1

    def opus_encoder(**fmtp: Any) -> Encoder:
        fmtp.pop("sprop-stereo", None)
        return OpusEncoder(channels=opus_channels(fmtp), **fmtp)

    def opus_decoder(**fmtp: Any) -> Decoder:
        channels = 2 if str(fmtp.pop("sprop-stereo", "0")) == "1" else 1
        fmtp.pop("stereo", None)
        return OpusDecoder(channels=channels, **fmtp)

    def no_params(fmtp: dict[str, Any], name: str) -> None:
        if fmtp:
            raise CodecError(f"{name} takes no fmtp parameters, got {sorted(fmtp)}")

    def pcmu_enc(**fmtp: Any) -> Encoder:
        no_params(fmtp, "PCMU")
        return G711Encoder("ulaw")

    def pcmu_dec(**fmtp: Any) -> Decoder:
        no_params(fmtp, "PCMU")
        return G711Decoder("ulaw")

    def pcma_enc(**fmtp: Any) -> Encoder:
        no_params(fmtp, "PCMA")
        return G711Encoder("alaw")

    def pcma_dec(**fmtp: Any) -> Decoder:
        no_params(fmtp, "PCMA")
        return G711Decoder("alaw")

    # Static payload types from RFC 3551 table 4.
    register_codec(CodecInfo("PCMU/8000", "PCMU", 8000, 8000, 1, 0), pcmu_enc, pcmu_dec)
    register_codec(CodecInfo("PCMA/8000", "PCMA", 8000, 8000, 1, 8), pcma_enc, pcma_dec)
    # RFC 3551 section 4.5.2: G.722 samples at 16 kHz but its RTP clock rate is 8000.
    register_codec(CodecInfo("G722/8000", "G722", 8000, 16000, 1, 9), G722Encoder, G722Decoder)
    register_codec(
        CodecInfo(
            "opus/48000/2",
            "opus",
            48000,
            48000,
            2,
            None,
            default_fmtp=MappingProxyType({"minptime": "10", "useinbandfec": "1"}),
        ),
        opus_encoder,
        opus_decoder,
    )
    # RFC 4733 events carry no audio: the media engine handles them, no PCM codec.
    register_codec(
        CodecInfo(
            "telephone-event/8000",
            "telephone-event",
            8000,
            8000,
            1,
            None,
            default_fmtp=MappingProxyType({"0-16": ""}),
        ),
        None,
        None,
    )


_register_builtins()
