"""``<Dial>`` helpers: failure statuses, ``<Sip>`` URI headers, caller IDs, services, bridge endings."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from trunkline.gateway.sip.uri import parse_uri
from trunkline.gateway.switch import dial
from trunkline.gateway.switch.bridge import bridge_until_end
from trunkline.gateway.switch.calls import CallStatus
from trunkline.gateway.switch.channel import SipCallChannel
from trunkline.gateway.switch.legs import Ended
from trunkline.gateway.twiml.channel import CallEnded


def test_failure_statuses_follow_twilio() -> None:
    assert dial.status_for_failure(486) is CallStatus.BUSY
    assert dial.status_for_failure(600) is CallStatus.BUSY
    assert dial.status_for_failure(480) is CallStatus.NO_ANSWER
    assert dial.status_for_failure(408) is CallStatus.NO_ANSWER
    assert dial.status_for_failure(487) is CallStatus.NO_ANSWER
    assert dial.status_for_failure(404) is CallStatus.FAILED
    assert dial.status_for_failure(503) is CallStatus.FAILED
    assert dial.status_for_failure(486, canceled=True) is CallStatus.CANCELED


def test_sip_uri_query_gives_x_headers_only() -> None:
    uri = parse_uri("sip:bob@example.com;transport=tcp?X-Team=blue&Subject=no&X-Ticket=42&User-to-User=abcd")
    assert dial.sip_headers(uri) == [("X-Team", "blue"), ("X-Ticket", "42"), ("User-to-User", "abcd")]
    assert dial.sip_headers(parse_uri("sip:bob@example.com")) == []
    assert uri.without_headers().serialize() == "sip:bob@example.com;transport=tcp"


def test_from_user_of_caller_ids() -> None:
    assert dial._user_of("+15551230000") == "+15551230000"
    assert dial._user_of("client:alice") == "alice"
    assert dial._user_of("sip:bob@example.com") == "bob"
    assert dial._user_of("") == "trunkline"


def test_ring_tone_country() -> None:
    assert dial._ringback(None) == "ringback-us"
    assert dial._ringback("us") == "ringback-us"
    assert dial._ringback("gb") == "ringback-uk"
    assert dial._ringback("UK") == "ringback-uk"


class _Switch:
    """Just enough of a switch to carry services."""


def test_services_come_from_install_or_the_switch() -> None:
    switch = _Switch()
    assert dial.services(switch) == dial.DialServices()  # type: ignore[arg-type]
    trunks, location = object(), object()
    dial.install(switch, trunks=trunks, location=location)  # type: ignore[arg-type]
    assert dial.services(switch).trunks is trunks  # type: ignore[arg-type]
    own = object()
    switch.trunks = own  # type: ignore[attr-defined]
    got = dial.services(switch)  # type: ignore[arg-type]
    assert got.trunks is own and got.location is location


class FakeChannel:
    """A bridged leg: an ``ended`` future and a digit queue."""

    def __init__(self) -> None:
        self.ended: asyncio.Future[Ended] = asyncio.get_running_loop().create_future()
        self.digits: asyncio.Queue[str] = asyncio.Queue()

    async def next_digit(self, timeout: float) -> str | None:
        if self.ended.done():
            raise CallEnded
        try:
            return await asyncio.wait_for(self.digits.get(), timeout)
        except TimeoutError:
            return None


def _pair() -> tuple[FakeChannel, FakeChannel]:
    return FakeChannel(), FakeChannel()


def _ch(fake: FakeChannel) -> SipCallChannel:
    return cast(SipCallChannel, fake)


async def test_bridge_ends_when_the_callee_hangs_up() -> None:
    caller, callee = _pair()
    asyncio.get_running_loop().call_later(0.05, callee.ended.set_result, Ended(True, "bye"))
    assert await bridge_until_end(_ch(caller), _ch(callee), time_limit=5) == "callee"


async def test_bridge_ends_when_the_caller_hangs_up() -> None:
    caller, callee = _pair()
    asyncio.get_running_loop().call_later(0.05, caller.ended.set_result, Ended(True, "bye"))
    assert await bridge_until_end(_ch(caller), _ch(callee), hangup_on_star=True, time_limit=5) == "caller"


async def test_star_ends_the_bridge_only_with_hangup_on_star() -> None:
    caller, callee = _pair()
    for digit in "12*":
        caller.digits.put_nowait(digit)
    assert await bridge_until_end(_ch(caller), _ch(callee), hangup_on_star=True, time_limit=5) == "star"
    caller, callee = _pair()
    caller.digits.put_nowait("*")
    assert await bridge_until_end(_ch(caller), _ch(callee), time_limit=0.1) == "time-limit"
    assert caller.digits.qsize() == 1  # without hangupOnStar the digit is not consumed


async def test_time_limit() -> None:
    caller, callee = _pair()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (
        await bridge_until_end(_ch(caller), _ch(callee), hangup_on_star=True, time_limit=0.2) == "time-limit"
    )
    assert 0.15 <= loop.time() - started < 1.0


@pytest.mark.parametrize("status", [486, 600])
def test_busy_codes(status: int) -> None:
    assert dial.status_for_failure(status) is CallStatus.BUSY
