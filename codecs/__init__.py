"""Audio codecs: G.711 lookup tables, G.722 and Opus through PyAV, resampling, registry.

Import from the modules (``trunkline.codecs.g711`` ...) or use the registry helpers
re-exported here: ``get_codec``, ``create_encoder``, ``create_decoder``.
"""

from trunkline.codecs.base import CodecError, CodecInfo, Decoder, Encoder
from trunkline.codecs.registry import all_codecs, create_decoder, create_encoder, get_codec

__all__ = [
    "CodecError",
    "CodecInfo",
    "Decoder",
    "Encoder",
    "all_codecs",
    "create_decoder",
    "create_encoder",
    "get_codec",
]
