"""A minimal RTP "phone" for engine tests: a UDP socket on 127.0.0.1 sending paced RTP, recording replies.

The phone builds and parses packets with the independent parser of ``tests.peers.pcap`` and
encodes G.711 with ``audioop`` (``tests.peers.audio``), so a test never checks the product with
its own code.  Sending is paced against absolute deadlines on the event loop clock.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tests.peers import audio
from tests.peers.pcap import RtpPacket as WirePacket
from trunkline.gateway.sip.sdp import PCMA, PCMU, TELEPHONE_EVENT_8000, NegotiatedMedia, RtpFormat

Samples = npt.NDArray[np.int16]
ENCODERS: dict[int, Callable[[Samples], bytes]] = {0: audio.encode_pcmu, 8: audio.encode_pcma}
DECODERS: dict[int, Callable[[bytes], Samples]] = {0: audio.decode_pcmu, 8: audio.decode_pcma}
FORMATS = {0: PCMU, 8: PCMA}


def negotiated(
    remote_port: int,
    codec: RtpFormat = PCMU,
    *,
    telephone_event: RtpFormat | None = TELEPHONE_EVENT_8000,
    remote_rtcp_port: int | None = None,
    direction: str = "sendrecv",
    on_hold: bool = False,
    ptime: int = 20,
    local_port: int = 0,
) -> NegotiatedMedia:
    """A negotiation result pointing at a phone on 127.0.0.1."""
    return NegotiatedMedia(
        remote_address="127.0.0.1",
        remote_port=remote_port,
        remote_rtcp_address="127.0.0.1",
        remote_rtcp_port=remote_rtcp_port if remote_rtcp_port is not None else remote_port + 1,
        codec=codec,
        telephone_event=telephone_event,
        ptime=ptime,
        direction=direction,  # type: ignore[arg-type]
        on_hold=on_hold,
        local_port=local_port,
    )


@dataclass(slots=True)
class Received:
    time: float
    src: tuple[str, int]
    packet: WirePacket


@dataclass
class Phone:
    """One test endpoint: ``send``/``play`` RTP to ``dest`` and collect what arrives."""

    loop: asyncio.AbstractEventLoop
    payload_type: int = 0
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    seq: int = field(default_factory=lambda: random.getrandbits(16))
    ts: int = field(default_factory=lambda: random.getrandbits(32))
    received: list[Received] = field(default_factory=list)
    rtcp: list[tuple[float, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = self._bind()
        self.rtcp_sock = self._bind(self.port + 1)
        self.loop.add_reader(self.sock.fileno(), self._read, self.sock, False)
        self.loop.add_reader(self.rtcp_sock.fileno(), self._read, self.rtcp_sock, True)
        self.sent: list[bytes] = []

    def _bind(self, port: int | None = None) -> socket.socket:
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind(("127.0.0.1", port if port is not None else 0))
            except OSError:
                sock.close()
                if port is not None:
                    # RTCP port taken: start again with a fresh RTP port.
                    self.sock.close()
                    self.sock = self._bind()
                    port = self.port + 1
                continue
            sock.setblocking(False)
            return sock

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _read(self, sock: socket.socket, is_rtcp: bool) -> None:
        now = self.loop.time()
        while True:
            try:
                data, addr = sock.recvfrom(4096)
            except BlockingIOError:
                return
            if is_rtcp:
                self.rtcp.append((now, data))
            else:
                self.received.append(Received(now, addr, WirePacket.parse(data)))

    def packet(
        self, payload: bytes, *, payload_type: int | None = None, marker: bool = False, advance: int = 160
    ) -> bytes:
        head = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | (self.payload_type if payload_type is None else payload_type),
            self.seq,
            self.ts,
            self.ssrc,
        )
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + advance) & 0xFFFFFFFF
        return head + payload

    def send_raw(self, data: bytes, dest: tuple[str, int]) -> None:
        self.sent.append(data)
        self.sock.sendto(data, dest)

    async def send_paced(
        self, datagrams: Sequence[bytes | None], dest: tuple[str, int], interval: float = 0.02
    ) -> None:
        """Send one datagram per ``interval`` against absolute deadlines (``None`` = skip a slot)."""
        start = self.loop.time()
        for i, data in enumerate(datagrams):
            delay = start + i * interval - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if data is not None:
                self.send_raw(data, dest)

    def audio_packets(self, pcm: Samples, payload_type: int | None = None) -> list[bytes]:
        """G.711 packets of 20 ms for ``pcm`` (8 kHz), the first with the marker bit."""
        pt = self.payload_type if payload_type is None else payload_type
        encode = ENCODERS[pt]
        frames = pcm[: pcm.size // 160 * 160].reshape(-1, 160)
        return [self.packet(encode(f), payload_type=pt, marker=i == 0) for i, f in enumerate(frames)]

    def audio_from(self, payload_type: int | None = None, skip: int = 0) -> Samples:
        """Decoded G.711 audio of the received packets, in sequence order."""
        pt = self.payload_type if payload_type is None else payload_type
        pkts = [r.packet for r in self.received if r.packet.payload_type == pt][skip:]
        if not pkts:
            return np.zeros(0, dtype=np.int16)
        return DECODERS[pt](b"".join(p.payload for p in pkts))

    def close(self) -> None:
        for sock in (self.sock, self.rtcp_sock):
            self.loop.remove_reader(sock.fileno())
            sock.close()


def tone(freq: float, seconds: float, rate: int = 8000, dbfs: float = -12.0) -> Samples:
    return audio.tone(freq, seconds, rate, level_dbfs=dbfs)


def frames_of(items: Iterable[bytes]) -> list[bytes | None]:
    return list(items)
