"""Call queues: ``<Enqueue>``, ``<Dial><Queue>`` and the REST ``QueueControl``.

Entry points::

    async def run_enqueue(channel: SipCallChannel, enqueue: verbs.Enqueue) -> QueueResult
    async def dial_queue(channel: SipCallChannel, dial: verbs.Dial, noun: verbs.Queue) -> DialResult
    def queue_manager(switch: Switch) -> QueueManager      # QueueControl for the REST write side

Queues are FIFO and per account, keyed by ``friendly_name``; each has a ``queues`` record in the
store (``QU…`` SID, ``current_size``, ``max_size`` 100 by default, ``average_wait_time``) created
on first use and kept up to date as members come and go. As on Twilio:

* an enqueued caller waits while its ``waitUrl`` TwiML loops (re-requested each time it ends,
  with ``QueuePosition``, ``QueueSid``, ``QueueTime``, ``AvgQueueTime``, ``CurrentQueueSize`` and
  ``MaxQueueSize``); ``<Play>``, ``<Say>``, ``<Pause>``, ``<Redirect>``, ``<Leave>`` and
  ``<Hangup>`` run there, other verbs are skipped; without ``waitUrl`` it hears ringback;
* ``QueueResult`` is ``leave`` after ``<Leave>``, ``hangup`` when the caller hangs up while
  waiting, ``queue-full`` when the queue is at ``max_size``, and ``bridged`` when an agent's
  ``<Dial><Queue>`` took the caller (reported when that bridge ends);
* ``<Dial><Queue>`` takes the front member (waiting up to the Dial ``timeout`` for one), runs the
  noun's ``url`` TwiML on the dequeued caller (Twilio's "you are being connected" message), then
  bridges both until one hangs up (``hangupOnStar`` and ``timeLimit`` apply);
* REST ``POST Queues/{sid}/Members/{CallSid|Front}.json`` with ``Url`` redirects that member to
  new TwiML (its ``<Enqueue>`` action is not requested, as on Twilio).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin
from weakref import WeakKeyDictionary

from trunkline.gateway.api.control import ControlError, QueueMember
from trunkline.gateway.api.envelope import rfc2822
from trunkline.gateway.api.writes import queue_json
from trunkline.gateway.store import Filter
from trunkline.gateway.switch.bridge import EmbeddedChannel
from trunkline.gateway.switch.calls import new_sid
from trunkline.gateway.switch.dial import bridge_until_end, run_whisper
from trunkline.gateway.switch.switch import ActiveCall, TwimlSource
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import CallEnded, DialResult, QueueResult
from trunkline.gateway.twiml.interpreter import TwimlSession
from trunkline.media.tones import TONES

if TYPE_CHECKING:
    from trunkline.gateway.switch.channel import SipCallChannel
    from trunkline.gateway.switch.switch import Switch

__all__ = [
    "DEFAULT_MAX_SIZE",
    "Member",
    "QueueManager",
    "QueueState",
    "dial_queue",
    "queue_manager",
    "run_enqueue",
]

log = logging.getLogger("trunkline.switch.queues")

#: Twilio's default ``MaxSize`` of a queue.
DEFAULT_MAX_SIZE = 100
#: A waitUrl document that ends faster than this is re-requested only after a pause.
MIN_LOOP_SECONDS = 1.0


@dataclass(eq=False, slots=True)
class Member:
    """A caller waiting in a queue."""

    queue: QueueState
    active: ActiveCall
    channel: SipCallChannel
    enqueued_at: float
    taken: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    """Resolved with the agent's call SID when a ``<Dial><Queue>`` takes this member."""
    ready: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    """Resolved by the member once its wait music has stopped."""
    bridge_done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    left_at: float | None = None

    @property
    def call_sid(self) -> str:
        """The waiting call's SID."""
        return self.active.call.sid


@dataclass(eq=False, slots=True)
class QueueState:
    """One queue's live members (the record itself is in the store)."""

    sid: str
    account_sid: str
    friendly_name: str
    members: list[Member] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def position(self, member: Member) -> int:
        """1-based position of ``member`` (0 once it left)."""
        try:
            return self.members.index(member) + 1
        except ValueError:
            return 0

    def average_wait(self, now: float) -> int:
        """Average seconds the current members have waited (Twilio computes it on request)."""
        if not self.members:
            return 0
        return round(sum(now - m.enqueued_at for m in self.members) / len(self.members))


class QueueManager:
    """The queues of one switch; implements the REST ``QueueControl`` protocol."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self.queues: dict[str, QueueState] = {}
        self._lock = asyncio.Lock()

    async def record(self, queue: QueueState) -> dict[str, Any]:
        """The queue's stored record (recreated if it was deleted meanwhile)."""
        record = await self.switch.store.get("queues", sid=queue.sid)
        if record is None:
            record = queue_json(
                queue.account_sid,
                queue.sid,
                queue.friendly_name,
                DEFAULT_MAX_SIZE,
                created=self.switch.clock(),
            )
        return dict(record)

    async def queue(self, account_sid: str, name: str) -> QueueState:
        """The queue ``name`` of the account, created (record included) on first use."""
        async with self._lock:
            for state in self.queues.values():
                if state.account_sid == account_sid and state.friendly_name == name:
                    return state
            page = await self.switch.store.select(
                "queues",
                [Filter("account_sid", "=", account_sid), Filter("friendly_name", "=", name)],
                limit=1,
            )
            if page.records:
                sid = str(page.records[0]["sid"])
            else:
                sid = new_sid("QU")
                record = queue_json(account_sid, sid, name, DEFAULT_MAX_SIZE, created=self.switch.clock())
                await self.switch.store.put("queues", record)
            state = QueueState(sid, account_sid, name)
            self.queues[sid] = state
            return state

    async def update(self, queue: QueueState) -> None:
        """Store the queue's current size and average wait."""
        now = self.switch.clock()
        record = await self.record(queue)
        record["current_size"] = len(queue.members)
        record["average_wait_time"] = queue.average_wait(now)
        record["date_updated"] = rfc2822(now)
        try:
            await self.switch.store.put("queues", record)
        except Exception:
            log.exception("cannot store queue %s", queue.sid)

    def _member_json(self, member: Member, now: float) -> QueueMember:
        queue = member.queue
        return QueueMember(
            queue.account_sid,
            queue.sid,
            member.call_sid,
            member.enqueued_at,
            queue.position(member),
            round(now - member.enqueued_at),
        )

    # -- QueueControl ------------------------------------------------------------------------------

    async def members(self, account_sid: str, queue_sid: str) -> list[QueueMember]:
        """The calls waiting in the queue, front first."""
        queue = self.queues.get(queue_sid)
        if queue is None or queue.account_sid != account_sid:
            return []
        now = self.switch.clock()
        return [self._member_json(m, now) for m in queue.members]

    async def dequeue(
        self, account_sid: str, queue_sid: str, call_sid: str | None, url: str, method: str
    ) -> QueueMember:
        """Take a member out (the front one when ``call_sid`` is None) and redirect it to ``url``."""
        queue = self.queues.get(queue_sid)
        if queue is None or queue.account_sid != account_sid:
            raise ControlError.not_found(f"/Queues/{queue_sid}/Members/{call_sid or 'Front'}")
        candidates = [m for m in queue.members if not m.taken.done()]
        if call_sid is not None:
            candidates = [m for m in candidates if m.call_sid == call_sid]
        if not candidates:
            raise ControlError.not_found(f"/Queues/{queue_sid}/Members/{call_sid or 'Front'}")
        member = candidates[0]
        snapshot = self._member_json(member, self.switch.clock())
        queue.members.remove(member)
        await self.update(queue)
        self.switch.redirect(member.active, TwimlSource(url, method))
        return snapshot

    async def take_front(self, queue: QueueState, agent_sid: str, timeout: float) -> Member | None:
        """Take the front member for an agent, waiting up to ``timeout`` s for one to arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for member in queue.members:
                if not member.taken.done() and not member.channel.is_ended:
                    member.taken.set_result(agent_sid)
                    member.left_at = self.switch.clock()
                    queue.members.remove(member)
                    await self.update(queue)
                    return member
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            queue.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.arrived.wait(), remaining)


_MANAGERS: WeakKeyDictionary[Any, QueueManager] = WeakKeyDictionary()


def queue_manager(switch: Switch) -> QueueManager:
    """The :class:`QueueManager` of ``switch`` (created on first use)."""
    manager = _MANAGERS.get(switch)
    if manager is None:
        manager = _MANAGERS[switch] = QueueManager(switch)
    return manager


# -- waiting --------------------------------------------------------------------------------------


class _Leave(Exception):
    """``<Leave>`` ran in the waitUrl document."""


class _WaitSession(TwimlSession):
    """Runs one pass of the waitUrl TwiML with Twilio's verb restrictions."""

    def __init__(self, member_channel: SipCallChannel, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.member_channel = member_channel

    async def _run_verb(self, verb: v.Verb) -> Any:
        if isinstance(verb, v.Leave):
            raise _Leave
        if isinstance(verb, v.Hangup | v.Reject):
            await self.member_channel.hangup()
            raise CallEnded
        if isinstance(verb, v.Say | v.Play | v.Pause | v.Redirect):
            return await super()._run_verb(verb)
        return None  # Gather, Dial, Record, Enqueue... are not allowed in a waitUrl document


async def _wait_loop(switch: Switch, member: Member, enqueue: v.Enqueue, base: str) -> str:
    """Loop the waitUrl TwiML (or ringback) until ``<Leave>`` (``leave``) or hangup (``hangup``)."""
    channel = member.channel
    queue = member.queue
    loop = asyncio.get_running_loop()
    manager = queue_manager(switch)
    if not enqueue.wait_url:
        with contextlib.suppress(CallEnded):
            await channel.stream.play(TONES["ringback-us"], loop=0)
        return "hangup"
    url = urljoin(base, enqueue.wait_url) if base else enqueue.wait_url
    while not channel.is_ended:
        now = switch.clock()
        record = await manager.record(queue)
        context = switch.context(member.active)
        context.extra = {
            "QueuePosition": str(queue.position(member)),
            "QueueSid": queue.sid,
            "QueueTime": str(round(now - member.enqueued_at)),
            "AvgQueueTime": str(queue.average_wait(now)),
            "CurrentQueueSize": str(len(queue.members)),
            "MaxQueueSize": str(record.get("max_size", DEFAULT_MAX_SIZE)),
        }
        session = _WaitSession(
            channel,
            EmbeddedChannel(channel),
            context,
            switch.webhooks,
            url=url,
            method=enqueue.wait_url_method,
            debugger=switch,
            callbacks=switch.callbacks,
        )
        started = loop.time()
        try:
            await session.run()
        except _Leave:
            return "leave"
        if channel.is_ended:
            break
        if loop.time() - started < MIN_LOOP_SECONDS:
            await asyncio.sleep(MIN_LOOP_SECONDS)
    return "hangup"


async def run_enqueue(channel: SipCallChannel, enqueue: v.Enqueue) -> QueueResult:
    """``<Enqueue>`` on ``channel`` (the entry point ``SipCallChannel.enqueue`` delegates to)."""
    switch: Switch = channel.host  # type: ignore[assignment]
    active = switch.calls.get(channel.call_sid)
    if active is None or channel.is_ended:
        raise CallEnded
    manager = queue_manager(switch)
    queue = await manager.queue(active.call.account_sid, enqueue.name)
    record = await manager.record(queue)
    max_size = record.get("max_size")
    if len(queue.members) >= int(DEFAULT_MAX_SIZE if max_size is None else max_size):
        return QueueResult("queue-full", queue.sid, 0)
    member = Member(queue, active, channel, switch.clock())
    queue.members.append(member)
    queue.arrived.set()
    await manager.update(queue)
    loop = asyncio.get_running_loop()
    waiting = loop.create_task(_wait_loop(switch, member, enqueue, active.source.url or ""))
    result = "hangup"
    try:
        waits: set[asyncio.Future[Any]] = {waiting, member.taken, channel.ended}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if member.taken.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, CallEnded, Exception):
                await waiting
            channel.stream.stop_playback()
            member.ready.set_result(None)
            ends: set[asyncio.Future[Any]] = {member.bridge_done, channel.ended}
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            if not member.bridge_done.done():
                await member.bridge_done  # the agent side notices the hangup and ends the bridge
            result = "bridged"
        elif waiting.done() and not waiting.cancelled() and waiting.exception() is None:
            result = waiting.result()
        else:
            result = "hangup"
    finally:
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, CallEnded, Exception):
                await waiting
        if member in queue.members:
            queue.members.remove(member)
            await manager.update(queue)
        if member.left_at is None:
            member.left_at = switch.clock()
    return QueueResult(result, queue.sid, round(member.left_at - member.enqueued_at))


# -- the agent side --------------------------------------------------------------------------------


async def dial_queue(channel: SipCallChannel, dial: v.Dial, noun: v.Queue) -> DialResult:
    """``<Dial><Queue>``: bridge the agent on ``channel`` with the queue's front member."""
    switch: Switch = channel.host  # type: ignore[assignment]
    active = switch.calls.get(channel.call_sid)
    if active is None or channel.is_ended:
        raise CallEnded
    manager = queue_manager(switch)
    queue = await manager.queue(active.call.account_sid, noun.name)
    member = await manager.take_front(queue, channel.call_sid, float(max(1, dial.timeout)))
    if member is None:
        return DialResult("no-answer")
    try:
        ready: set[asyncio.Future[Any]] = {member.ready, member.channel.ended}
        await asyncio.wait(ready, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
        if noun.url and not member.channel.is_ended:
            base = active.source.url or ""
            url = urljoin(base, noun.url) if base else noun.url
            # Twilio's parameters for the Queue noun's url (note its spelling of DequeingCallSid).
            extra = {
                "QueueSid": queue.sid,
                "QueueTime": str(round((member.left_at or switch.clock()) - member.enqueued_at)),
                "DequeingCallSid": channel.call_sid,
            }
            with contextlib.suppress(CallEnded):
                if not await run_whisper(switch, member.active, member.channel, url, noun.method, extra):
                    await member.channel.hangup()
        if member.channel.is_ended or channel.is_ended:
            if channel.is_ended:
                raise CallEnded
            return DialResult("completed", call_sid=member.call_sid)
        if not channel.answered:
            await channel.answer()
        channel.flush_digits()
        started = switch.clock()
        switch.engine.bridge(channel.stream, member.channel.stream)
        try:
            await bridge_until_end(
                channel, member.channel, hangup_on_star=dial.hangup_on_star, time_limit=float(dial.time_limit)
            )
        finally:
            switch.engine.unbridge(channel.stream)
        duration = round(switch.clock() - started)
    finally:
        if not member.bridge_done.done():
            member.bridge_done.set_result(None)
    return DialResult("completed", call_sid=member.call_sid, duration=duration, bridged=True)
