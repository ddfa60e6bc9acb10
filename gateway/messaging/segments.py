"""How many SMS segments a body costs, counted as Twilio counts them.

A body that fits the GSM 03.38 7-bit alphabet (with its extension table, whose characters take
two septets) is sent as GSM-7: 160 septets in one segment, 153 per segment when concatenated (the
user data header takes the rest). Anything else is sent as UCS-2: 70 UTF-16 code units in one
segment, 67 per segment when concatenated. Twilio accepts bodies up to 1,600 characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_BODY_CHARS = 1600

# GSM 03.38 basic character set (3GPP TS 23.038 §6.2.1).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table (§6.2.1.1): each costs an escape plus the character, two septets.
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """Encoding, units used (septets or UTF-16 code units) and the number of segments."""

    encoding: str  # "GSM-7" or "UCS-2"
    units: int
    segments: int


def count_segments(body: str) -> SegmentInfo:
    """Segments Twilio bills for ``body`` (an empty body is one segment)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in body):
        septets = sum(2 if ch in _GSM_EXTENDED else 1 for ch in body)
        segments = 1 if septets <= 160 else math.ceil(septets / 153)
        return SegmentInfo("GSM-7", septets, segments)
    units = len(body.encode("utf-16-le")) // 2
    segments = 1 if units <= 70 else math.ceil(units / 67)
    return SegmentInfo("UCS-2", units, segments)
