"""RTP data packets (RFC 3550 section 5.1) with RFC 8285 header extensions.

This module is sans-I/O: it turns bytes into :class:`RtpPacket` objects and back,
and never touches a socket or the clock.  Parsing is on the media hot path
(100 packets per second per call leg), so the common case (no CSRC, no
extension, no padding) goes through one precompiled :class:`struct.Struct`.

Malformed input raises :class:`ValueError` with a message that names the
problem and the offending value, e.g. ``"RTP packet is truncated: 10 bytes, need 12"``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "RTP_HEADER_SIZE",
    "RTP_VERSION",
    "RtpPacket",
    "is_rtcp",
    "pack_header_extensions",
    "parse_header_extensions",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12

#: RFC 8285 section 4.2: one-byte header extension profile ("defined by profile").
ONE_BYTE_PROFILE = 0xBEDE
#: RFC 8285 section 4.3: two-byte header extension profile 0x100 + 4 "appbits".
TWO_BYTE_PROFILE = 0x1000
TWO_BYTE_PROFILE_MASK = 0xFFF0

_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
_CSRC_CACHE: dict[int, struct.Struct] = {n: struct.Struct(f"!{n}I") for n in range(16)}


def is_rtcp(data: bytes) -> bool:
    """Tell RTCP from RTP on a multiplexed port (RFC 5761 section 4).

    RTCP packet types 192-223 occupy the second octet where RTP carries the
    marker bit and payload type; RFC 5761 section 4 reserves RTP payload types
    64-95 so that an octet in 192..223 means RTCP.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_header_extensions(profile: int, data: bytes) -> dict[int, bytes]:
    """Parse RFC 8285 header extension elements into ``{id: value}``.

    Returns an empty dict for a profile that is neither the one-byte form
    (``0xBEDE``, RFC 8285 section 4.2) nor the two-byte form (``0x100X``,
    section 4.3); such extensions stay opaque in :attr:`RtpPacket.extension_data`.
    """
    elements: dict[int, bytes] = {}
    n = len(data)
    pos = 0
    if profile == ONE_BYTE_PROFILE:
        while pos < n:
            byte = data[pos]
            if byte == 0:  # RFC 8285 section 4.2: padding byte
                pos += 1
                continue
            ext_id = byte >> 4
            if ext_id == 15:  # RFC 8285 section 4.2: ID 15 stops processing
                break
            length = (byte & 0x0F) + 1
            pos += 1
            if pos + length > n:
                raise ValueError(
                    f"RTP header extension element {ext_id} is truncated: {n - pos} bytes, need {length}"
                )
            elements[ext_id] = data[pos : pos + length]
            pos += length
    elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while pos < n:
            ext_id = data[pos]
            if ext_id == 0:  # RFC 8285 section 4.3: padding byte
                pos += 1
                continue
            if pos + 2 > n:
                raise ValueError(f"RTP header extension element {ext_id} is truncated: no length byte")
            length = data[pos + 1]
            pos += 2
            if pos + length > n:
                raise ValueError(
                    f"RTP header extension element {ext_id} is truncated: {n - pos} bytes, need {length}"
                )
            elements[ext_id] = data[pos : pos + length]
            pos += length
    return elements


def pack_header_extensions(elements: dict[int, bytes], profile: int | None = None) -> tuple[int, bytes]:
    """Encode ``{id: value}`` as RFC 8285 elements; return ``(profile, data)``.

    The one-byte form is used when every id is 1-14 and every value is 1-16
    bytes long (RFC 8285 section 4.2), unless a two-byte ``profile`` is asked
    for; otherwise the two-byte form (ids 1-255, values 0-255 bytes).
    The data is zero-padded to a multiple of 4 bytes (RFC 3550 section 5.3.1).
    """
    one_byte = all(1 <= i <= 14 and 1 <= len(v) <= 16 for i, v in elements.items())
    if profile is not None and profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        one_byte = False
    out = bytearray()
    if one_byte:
        profile = ONE_BYTE_PROFILE
        for ext_id, value in elements.items():
            out.append((ext_id << 4) | (len(value) - 1))
            out += value
    else:
        if profile is None or profile & TWO_BYTE_PROFILE_MASK != TWO_BYTE_PROFILE:
            profile = TWO_BYTE_PROFILE
        for ext_id, value in elements.items():
            if not 1 <= ext_id <= 255:
                raise ValueError(f"RTP header extension id {ext_id} is out of range 1-255")
            if len(value) > 255:
                raise ValueError(f"RTP header extension element {ext_id} is too long: {len(value)} bytes")
            out.append(ext_id)
            out.append(len(value))
            out += value
    out += b"\x00" * (-len(out) % 4)
    return profile, bytes(out)


@dataclass(slots=True)
class RtpPacket:
    """One RTP data packet (RFC 3550 section 5.1).

    The packet is mutable on purpose: a relay rewrites ``ssrc``,
    ``sequence_number`` and ``timestamp`` in place before re-serialising.

    Header extension (RFC 3550 section 5.3.1): ``extension_profile`` is ``None``
    when the X bit is clear.  When the profile is RFC 8285's one-byte
    (``0xBEDE``) or two-byte (``0x100X``) form, :meth:`parse` also decodes the
    elements into ``extensions``.  :meth:`serialize` encodes ``extensions`` when
    it is non-empty, and otherwise writes ``extension_data`` verbatim.

    ``padding_size`` is the number of padding octets (0 = P bit clear),
    including the final count octet (RFC 3550 section 5.1).
    """

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    extension_data: bytes = b""
    extensions: dict[int, bytes] = field(default_factory=dict)
    padding_size: int = 0

    @property
    def version(self) -> int:
        """RTP version; always 2 (RFC 3550 section 5.1)."""
        return RTP_VERSION

    @property
    def padding(self) -> bool:
        """Whether the P bit is set."""
        return self.padding_size > 0

    @property
    def extension(self) -> bool:
        """Whether the X bit is set."""
        return self.extension_profile is not None or bool(self.extensions)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; raise :class:`ValueError` if it is malformed."""
        n = len(data)
        if n < 12:
            raise ValueError(f"RTP packet is truncated: {n} bytes, need 12")
        first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
        if first & 0xC0 != 0x80:
            raise ValueError(f"RTP version {first >> 6} is not supported")
        if first & 0x3F == 0:  # fast path: no padding, extension or CSRC
            return cls(second & 0x7F, seq, ts, ssrc, data[12:], bool(second & 0x80))

        pos = 12
        cc = first & 0x0F
        csrc: list[int] = []
        if cc:
            need = 12 + 4 * cc
            if n < need:
                raise ValueError(f"RTP packet is truncated: {n} bytes, need {need}")
            csrc = list(_CSRC_CACHE[cc].unpack_from(data, 12))
            pos = need

        profile: int | None = None
        ext_data = b""
        extensions: dict[int, bytes] = {}
        if first & 0x10:
            if n < pos + 4:
                raise ValueError("RTP header extension is truncated")
            profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += 4
            end = pos + 4 * words
            if end > n:
                raise ValueError("RTP header extension is truncated")
            ext_data = data[pos:end]
            extensions = parse_header_extensions(profile, ext_data)
            pos = end

        end = n
        padding_size = 0
        if first & 0x20:
            padding_size = data[-1]
            if padding_size == 0:
                raise ValueError("RTP padding length 0 is invalid")
            if padding_size > n - pos:
                raise ValueError(f"RTP padding length {padding_size} exceeds payload")
            end = n - padding_size

        return cls(
            second & 0x7F,
            seq,
            ts,
            ssrc,
            data[pos:end],
            bool(second & 0x80),
            csrc,
            profile,
            ext_data,
            extensions,
            padding_size,
        )

    def serialize(self, padding: int | None = None) -> bytes:
        """Return the packet as bytes.

        ``padding`` overrides :attr:`padding_size` (number of padding octets
        including the count octet, 1-255; 0 for none).
        """
        pad = self.padding_size if padding is None else padding
        if not 0 <= pad <= 255:
            raise ValueError(f"RTP padding length {pad} is out of range 0-255")
        cc = len(self.csrc)
        if cc > 15:
            raise ValueError(f"RTP CSRC count {cc} exceeds 15")
        first = 0x80 | cc
        if pad:
            first |= 0x20
        header = _HEADER.pack(
            first,
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence_number,
            self.timestamp,
            self.ssrc,
        )
        if cc == 0 and not pad and self.extension_profile is None and not self.extensions:
            return header + self.payload

        parts = [header]
        if cc:
            parts.append(_CSRC_CACHE[cc].pack(*self.csrc))
        if self.extensions:
            profile, ext = pack_header_extensions(self.extensions, self.extension_profile)
        elif self.extension_profile is not None:
            profile, ext = self.extension_profile, self.extension_data
            if len(ext) % 4:
                raise ValueError(f"RTP header extension length {len(ext)} is not a multiple of 4")
        else:
            profile = None
            ext = b""
        if profile is not None:
            parts[0] = bytes([header[0] | 0x10]) + header[1:]
            parts.append(_EXT_HEADER.pack(profile, len(ext) // 4))
            parts.append(ext)
        parts.append(self.payload)
        if pad:
            parts.append(b"\x00" * (pad - 1) + bytes([pad]))
        return b"".join(parts)
