"""The built-in demo app, run by the real interpreter over HTTP against a scripted call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from trunkline.gateway.demo import VOICE_PATH, add_demo_routes
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import AudioUrl, RecordResult, Speech
from trunkline.gateway.twiml.interpreter import CallContext, TwimlSession
from trunkline.gateway.twiml.webhooks import WebhookClient

from .twiml.fake_channel import FakeChannel


@pytest.fixture
async def demo_url() -> AsyncIterator[str]:
    app = web.Application()
    add_demo_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


async def run(url: str, channel: FakeChannel) -> list[object]:
    client = WebhookClient(timeout=5)
    context = CallContext("AC" + "d" * 32, "token", channel.call_sid, "+15550001111", "+15552223333")
    try:
        await TwimlSession(channel, context, client, url=url + VOICE_PATH).run()
    finally:
        await client.close()
    return [entry[0] for kind, entry in channel.log if kind == "play"]  # type: ignore[index]


def spoken(plays: list[object]) -> list[str]:
    return [item.text for items in plays for item in items if isinstance(item, Speech)]  # type: ignore[attr-defined]


async def test_option_1_echoes_digits(demo_url: str) -> None:
    channel = FakeChannel(digits_during_play="1", digits=["4", "2", "#"], hangup_after_plays=5)
    plays = await run(demo_url, channel)
    assert "You typed 4 2." in spoken(plays)


async def test_option_2_records_and_plays_back(demo_url: str) -> None:
    channel = FakeChannel(
        digits_during_play="2",
        record_result=RecordResult("RE" + "5" * 32, "/tmp/x.wav", 3.0, digits="#"),
        hangup_after_plays=6,
    )
    plays = await run(demo_url, channel)
    urls = [item.url for items in plays for item in items if isinstance(item, AudioUrl)]  # type: ignore[attr-defined]
    assert urls == [f"http://127.0.0.1:8080/2010-04-01/Accounts/AC{'d' * 32}/Recordings/RE{'5' * 32}"]
    assert "Here is your message." in spoken(plays)


async def test_option_3_joins_the_demo_conference(demo_url: str) -> None:
    from trunkline.gateway.twiml.channel import DialResult

    channel = FakeChannel(digits_during_play="3", dial_result=DialResult("completed"))
    await run(demo_url, channel)
    dial = next(entry for kind, entry in channel.log if kind == "dial")
    assert isinstance(dial, v.Dial)
    assert [n.name for n in dial.nouns if isinstance(n, v.Conference)] == ["demo"]


async def test_no_input_says_goodbye(demo_url: str) -> None:
    channel = FakeChannel()
    plays = await run(demo_url, channel)
    assert spoken(plays)[-1] == "We did not receive any input. Goodbye."
    assert channel.kinds()[-1] == "hangup"
