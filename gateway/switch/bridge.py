"""Helpers shared by ``<Dial>`` and ``<Dial><Queue>``: waiting on a bridge and whisper TwiML.

* :func:`bridge_until_end` waits while two bridged channels talk and says why it ended (either
  side hung up, ``*`` with ``hangupOnStar``, or ``timeLimit``); the bridge itself is made and
  undone by the caller through the media engine (``MediaEngine.bridge``/``unbridge``);
* :func:`run_whisper` runs a noun's ``url`` TwiML on one leg before the bridge (Twilio's "whisper"
  or call screening): the end of the document leads to the bridge, ``<Hangup>`` hangs that leg up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import CallEnded
from trunkline.gateway.twiml.interpreter import TwimlSession

if TYPE_CHECKING:
    from trunkline.gateway.switch.channel import SipCallChannel
    from trunkline.gateway.switch.switch import ActiveCall, Switch

__all__ = ["bridge_until_end", "run_whisper"]


async def bridge_until_end(
    caller: SipCallChannel,
    callee: SipCallChannel,
    *,
    hangup_on_star: bool = False,
    time_limit: float = 14400.0,
) -> str:
    """Wait while two bridged channels talk; returns why it ended.

    ``caller``/``callee`` hung up, ``star`` (the caller pressed ``*`` with ``hangupOnStar``) or
    ``time-limit``. The bridge itself is not touched.
    """
    loop = asyncio.get_running_loop()
    waits: set[asyncio.Future[Any]] = {caller.ended, callee.ended}
    star: asyncio.Task[None] | None = None
    if hangup_on_star:

        async def watch_star() -> None:
            while True:
                digit = await caller.next_digit(3600.0)
                if digit == "*":
                    return

        star = loop.create_task(watch_star())
        waits.add(star)
    try:
        done, _ = await asyncio.wait(waits, timeout=max(0.0, time_limit), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if star is not None and not star.done():
            star.cancel()
            with contextlib.suppress(asyncio.CancelledError, CallEnded):
                await star
    if caller.ended.done():
        return "caller"
    if callee.ended.done():
        return "callee"
    if star is not None and star in done and not star.cancelled() and star.exception() is None:
        return "star"
    return "time-limit"


class EmbeddedChannel:
    """A call's channel as an embedded TwiML document sees it (a whisper to the callee, a queue's
    waitUrl): the document's end does not hang the call up, and the call counts as answered."""

    def __init__(self, channel: SipCallChannel) -> None:
        self._channel = channel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    @property
    def call_sid(self) -> str:
        return self._channel.call_sid

    @property
    def answered(self) -> bool:
        return True

    async def hangup(self) -> None:
        return None


class _WhisperSession(TwimlSession):
    """Runs the whisper; ``<Hangup>``/``<Reject>`` really hang the callee up."""

    hung_up = False

    async def _run_verb(self, verb: v.Verb) -> Any:
        if isinstance(verb, v.Hangup | v.Reject):
            self.hung_up = True
            raise CallEnded
        if isinstance(verb, v.Dial | v.Enqueue | v.Refer | v.Record):
            return None  # not allowed in a whisper: skipped
        return await super()._run_verb(verb)


async def run_whisper(
    switch: Switch,
    active: ActiveCall,
    channel: SipCallChannel,
    url: str,
    method: str,
    extra: dict[str, str] | None = None,
) -> bool:
    """Run ``url``'s TwiML on ``channel`` (with ``extra`` request parameters); False when it hung up."""
    context = switch.context(active)
    if extra:
        context.extra = dict(extra)
    session = _WhisperSession(
        EmbeddedChannel(channel),
        context,
        switch.webhooks,
        url=url,
        method=method,
        debugger=switch,
        callbacks=switch.callbacks,
    )
    await session.run()
    return not session.hung_up and not channel.is_ended
