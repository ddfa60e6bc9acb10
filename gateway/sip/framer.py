"""Sans-I/O framing of SIP messages on stream transports (TCP, TLS).

RFC 3261 section 18.3: on a stream every message carries Content-Length, which gives
the body size; CRLFs before a start-line are ignored (section 7.5).  RFC 5626 section
3.5.1 keep-alives: a double CRLF is a "ping" the receiver answers with one CRLF "pong".
"""

from __future__ import annotations

import re

from trunkline.gateway.sip.grammar import SipParseError

__all__ = ["DEFAULT_MAX_MESSAGE", "FramingError", "StreamFramer"]

DEFAULT_MAX_MESSAGE = 65535

# Content-Length / compact "l" header line inside a head that starts with "\r\n".
_CONTENT_LENGTH = re.compile(
    rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(?:\r\n[ \t]+)?([^\r\n]*)", re.IGNORECASE
)


class FramingError(SipParseError):
    """The byte stream cannot be framed; the connection must be closed.

    ``status_code`` is 400 (missing/bad Content-Length) or 413 (message too large).
    """


class StreamFramer:
    """Cut a SIP byte stream into whole messages.

    ``feed(data)`` returns the complete messages now available (bytes, each ready for
    ``parse_message``).  Keep-alive pings are counted; ``take_pings()`` returns how many
    arrived since the last call, so the transport can answer each with ``b"\\r\\n"``.
    After a ``FramingError`` the framer stays failed.
    """

    __slots__ = ("_buffer", "_failed", "_pings", "_scan_from", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._pings = 0
        self._scan_from = 0
        self._failed: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def take_pings(self) -> int:
        """Return and reset the number of double-CRLF keep-alive pings received."""
        pings, self._pings = self._pings, 0
        return pings

    def _fail(self, error: FramingError) -> FramingError:
        self._failed = error
        return error

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every message completed by them."""
        if self._failed is not None:
            raise self._failed
        buf = self._buffer
        buf += data
        out: list[bytes] = []
        while buf:
            # Between messages: "\r\n\r\n" is a ping, a lone "\r\n" is a pong (RFC 5626 3.5.1).
            if buf[0] == 0x0D:
                if buf.startswith(b"\r\n\r\n"):
                    self._pings += 1
                    del buf[:4]
                    continue
                if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                    break  # could still become a ping
                if buf.startswith(b"\r\n"):
                    del buf[:2]
                    continue
                raise self._fail(FramingError("stray CR between messages"))
            end = buf.find(b"\r\n\r\n", max(0, self._scan_from - 3))
            if end < 0:
                if len(buf) > self.max_size:
                    raise self._fail(FramingError(f"message head exceeds {self.max_size} bytes", 413))
                self._scan_from = len(buf)
                break
            self._scan_from = 0
            m = _CONTENT_LENGTH.search(buf, 0, end + 2)
            if m is None:
                raise self._fail(
                    FramingError("missing Content-Length on a stream transport (RFC 3261 section 18.3)")
                )
            value = m.group(1).strip()
            if not value.isdigit():
                raise self._fail(FramingError(f"bad Content-Length {value!r}", header="Content-Length"))
            total = end + 4 + int(value)
            if total > self.max_size:
                raise self._fail(FramingError(f"message of {total} bytes exceeds {self.max_size}", 413))
            if len(buf) < total:
                self._scan_from = end  # head already found; wait for the body
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out
