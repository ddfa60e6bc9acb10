"""Queues: records in the store, FIFO order, members for the REST API, dequeue, agents waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from trunkline.gateway.api.control import ControlError
from trunkline.gateway.config import Account
from trunkline.gateway.store import Filter, SqliteStore
from trunkline.gateway.switch.calls import Call, CallStatus
from trunkline.gateway.switch.channel import SipCallChannel
from trunkline.gateway.switch.queues import DEFAULT_MAX_SIZE, Member, QueueManager
from trunkline.gateway.switch.switch import ActiveCall, Switch, TwimlSource

ACCOUNT = Account("AC" + "ab" * 16, "token", "test")


class FakeSwitch:
    """The parts of the switch a QueueManager uses, with a clock the test moves."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.now = 1_700_000_000.0
        self.redirects: list[tuple[str, TwimlSource]] = []

    def clock(self) -> float:
        return self.now

    def redirect(self, active: ActiveCall, source: TwimlSource) -> None:
        self.redirects.append((active.call.sid, source))


class FakeChannel:
    def __init__(self) -> None:
        self.is_ended = False


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(tmp_path / "q.db")
    await db.open()
    yield db
    await db.close()


def _member(manager: QueueManager, queue: Any, switch: FakeSwitch) -> Member:
    call = Call(ACCOUNT.sid, "+15550001111", "+15551230000", "inbound", status=CallStatus.IN_PROGRESS)
    member = Member(queue, ActiveCall(call, ACCOUNT), cast(SipCallChannel, FakeChannel()), switch.now)
    queue.members.append(member)
    return member


async def test_queue_record_created_once_and_kept_up_to_date(store: SqliteStore) -> None:
    switch = FakeSwitch(store)
    manager = QueueManager(cast(Switch, switch))
    queue = await manager.queue(ACCOUNT.sid, "support")
    assert queue.sid.startswith("QU") and len(queue.sid) == 34
    assert (await manager.queue(ACCOUNT.sid, "support")) is queue
    other = await manager.queue("AC" + "cd" * 16, "support")
    assert other.sid != queue.sid  # queues are per account
    record = await store.get("queues", sid=queue.sid)
    assert record is not None
    assert record["friendly_name"] == "support" and record["max_size"] == DEFAULT_MAX_SIZE
    assert record["current_size"] == 0

    _member(manager, queue, switch)
    switch.now += 10
    _member(manager, queue, switch)
    switch.now += 10
    await manager.update(queue)
    record = await store.get("queues", sid=queue.sid)
    assert record is not None
    assert record["current_size"] == 2 and record["average_wait_time"] == 15

    # A fresh manager (restart) finds the queue by name in the store.
    again = await QueueManager(cast(Switch, switch)).queue(ACCOUNT.sid, "support")
    assert again.sid == queue.sid
    page = await store.select("queues", [Filter("account_sid", "=", ACCOUNT.sid)])
    assert len(page.records) == 1


async def test_members_front_first_and_dequeue_redirects(store: SqliteStore) -> None:
    switch = FakeSwitch(store)
    manager = QueueManager(cast(Switch, switch))
    queue = await manager.queue(ACCOUNT.sid, "sales")
    first = _member(manager, queue, switch)
    switch.now += 5
    second = _member(manager, queue, switch)
    switch.now += 5
    members = await manager.members(ACCOUNT.sid, queue.sid)
    assert [(m.call_sid, m.position, m.wait_time) for m in members] == [
        (first.call_sid, 1, 10),
        (second.call_sid, 2, 5),
    ]
    assert members[0].to_json()["queue_sid"] == queue.sid
    assert await manager.members("AC" + "00" * 16, queue.sid) == []

    taken = await manager.dequeue(ACCOUNT.sid, queue.sid, second.call_sid, "http://app/next", "GET")
    assert taken.call_sid == second.call_sid and taken.position == 2
    assert switch.redirects[-1][0] == second.call_sid
    assert switch.redirects[-1][1].url == "http://app/next" and switch.redirects[-1][1].method == "GET"
    front = await manager.dequeue(ACCOUNT.sid, queue.sid, None, "http://app/front", "POST")
    assert front.call_sid == first.call_sid and front.position == 1
    assert queue.members == []
    with pytest.raises(ControlError) as exc:
        await manager.dequeue(ACCOUNT.sid, queue.sid, None, "http://app/x", "POST")
    assert exc.value.code == 20404 and exc.value.status == 404


async def test_agent_takes_the_front_member_or_waits_for_one(store: SqliteStore) -> None:
    switch = FakeSwitch(store)
    manager = QueueManager(cast(Switch, switch))
    queue = await manager.queue(ACCOUNT.sid, "support")
    assert await manager.take_front(queue, "CA" + "11" * 16, 0.05) is None
    waiting = asyncio.ensure_future(manager.take_front(queue, "CA" + "22" * 16, 2.0))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    member = _member(manager, queue, switch)
    queue.arrived.set()
    got = await asyncio.wait_for(waiting, 1.0)
    assert got is member and member.taken.result() == "CA" + "22" * 16
    assert queue.members == []
    record = await store.get("queues", sid=queue.sid)
    assert record is not None and record["current_size"] == 0
