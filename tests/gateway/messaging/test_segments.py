"""SMS segment counting at the GSM-7 and UCS-2 boundaries."""

import pytest

from trunkline.gateway.messaging.segments import count_segments


@pytest.mark.parametrize(
    ("body", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("€" * 81, "GSM-7", 162, 2),
        ("Søren Ærø: " + "ü" * 10, "GSM-7", 21, 1),
        ("Привет", "UCS-2", 6, 1),
        ("П" * 70, "UCS-2", 70, 1),
        ("П" * 71, "UCS-2", 71, 2),
        ("П" * 134, "UCS-2", 134, 2),
        ("П" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),  # astral characters are two UTF-16 code units
        ("a" * 159 + "ç", "UCS-2", 160, 3),  # one non-GSM character switches the whole body
    ],
)
def test_segments(body: str, encoding: str, units: int, segments: int) -> None:
    info = count_segments(body)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)
