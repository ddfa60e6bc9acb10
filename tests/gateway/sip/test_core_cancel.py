"""The CANCEL watcher of an INVITE is released with its final response (not with Timer L)."""

from __future__ import annotations

import gc
import weakref

from tests.gateway.sip.test_core import feed, make_core, request
from trunkline.gateway.sip.core import IncomingRequest, SipCore


class Watcher:
    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def on_cancel(self, transaction_id: str, now: float) -> None:
        self.cancelled.append(transaction_id)


def invite_core() -> tuple[SipCore, list[IncomingRequest]]:
    core = make_core()
    invites: list[IncomingRequest] = []
    core.on("INVITE", lambda incoming, now: invites.append(incoming))
    return core, invites


def test_cancel_before_the_final_response_reaches_the_watcher() -> None:
    core, invites = invite_core()
    feed(core, request("INVITE", branch="z9hG4bKinv1"))
    (incoming,) = invites
    watcher = Watcher()
    core.watch_cancel(incoming.transaction_id, watcher)
    core.respond(incoming.transaction_id, incoming.request, 180, 0.1)
    responses = feed(core, request("CANCEL", branch="z9hG4bKinv1"), 0.2)
    assert [r.status_code for r in responses] == [180, 200]
    assert watcher.cancelled == [incoming.transaction_id]


def test_the_watcher_is_released_by_the_2xx_and_a_late_cancel_changes_nothing() -> None:
    core, invites = invite_core()
    feed(core, request("INVITE", branch="z9hG4bKinv2"))
    (incoming,) = invites
    watcher = Watcher()
    ref = weakref.ref(watcher)
    core.watch_cancel(incoming.transaction_id, watcher)
    core.respond(incoming.transaction_id, incoming.request, 200, 0.1)
    # RFC 3261 section 9.2: a CANCEL after the final response is answered 200 and has no effect.
    responses = feed(core, request("CANCEL", branch="z9hG4bKinv2"), 0.2)
    assert [r.status_code for r in responses] == [200, 200]
    assert watcher.cancelled == []
    del watcher
    gc.collect()
    assert ref() is None  # the core no longer holds it while the transaction waits for Timer L
