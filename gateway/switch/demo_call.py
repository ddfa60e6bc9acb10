"""Temporary inbound call handler, until the switch (``calls.py``) drives calls by TwiML.

Every ``InboundLeg`` that passed security is answered with an SDP answer from
``negotiate_answer`` on ``rtp.address`` and an even port reserved from ``rtp.ports``, then
hung up by us after ``hangup_after`` seconds (0: at once, as the benchmark wants; ``None``:
never, the caller hangs up). No media flows yet: the media engine is not wired in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from trunkline.gateway.config import RtpConfig
from trunkline.gateway.sip.sdp import LocalMedia, SdpError, build_offer, negotiate_answer
from trunkline.gateway.switch.legs import InboundLeg

__all__ = ["DemoCallHandler", "PortAllocator"]

log = logging.getLogger("trunkline.switch.demo")


class PortAllocator:
    """Even RTP ports (RTCP = port + 1) from ``[low, high]``, handed out round-robin."""

    def __init__(self, low: int, high: int) -> None:
        first = low + (low % 2)
        self._ports = list(range(first, high, 2))
        if not self._ports:
            raise ValueError(f"no even port with room for RTCP in {low}-{high}")
        self._next = 0
        self._used: set[int] = set()

    def reserve(self) -> int:
        """A free even port (``RuntimeError`` when the range is exhausted)."""
        for _ in range(len(self._ports)):
            port = self._ports[self._next]
            self._next = (self._next + 1) % len(self._ports)
            if port not in self._used:
                self._used.add(port)
                return port
        raise RuntimeError("RTP port range exhausted")

    def release(self, port: int) -> None:
        """Give ``port`` back."""
        self._used.discard(port)

    def __len__(self) -> int:
        return len(self._used)


class DemoCallHandler:
    """``LegManager.on_inbound`` callback answering and hanging up (see module docstring)."""

    def __init__(self, rtp: RtpConfig, *, hangup_after: float | None = 3.0) -> None:
        self.rtp = rtp
        self.ports = PortAllocator(rtp.port_min, rtp.port_max)
        self.hangup_after = hangup_after
        self.answered = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, leg: InboundLeg) -> None:
        """Handle one new inbound leg."""
        try:
            port = self.ports.reserve()
        except RuntimeError:
            leg.reject(503)
            self.failed += 1
            return
        local = LocalMedia(self.rtp.address, port)
        try:
            offer = leg.offer_sdp
            if offer is None:
                sdp = build_offer(local).serialize()  # late offer: our offer goes in the 200
            else:
                answer, _ = negotiate_answer(offer, local)
                sdp = answer.serialize()
        except SdpError as exc:
            self.ports.release(port)
            leg.reject(exc.status_code, headers=(("Warning", exc.warning),) if exc.warning else ())
            self.failed += 1
            return
        leg.answer(sdp, local_media=local)
        self.answered += 1
        task = asyncio.get_running_loop().create_task(self._run(leg, port))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, leg: InboundLeg, port: int) -> None:
        try:
            if self.hangup_after is None:
                await leg.wait_ended()
            elif self.hangup_after <= 0:
                leg.hangup()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(leg.wait_ended(), self.hangup_after)
                leg.hangup()
        finally:
            self.ports.release(port)

    async def close(self) -> None:
        """Hang up the calls in progress."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
