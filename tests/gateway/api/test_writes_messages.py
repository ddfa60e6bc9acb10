"""The REST write side for messages (RFC 3428 SIP MESSAGE delivery, status callbacks,
Twilio's validation codes) driven by the official twilio library against a real aiohttp
server with a fake SIP MESSAGE sender. Voice writes are in test_writes_voice.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from .write_fakes import TOKEN, Api, running_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as running:
        yield running


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------

CYRILLIC = "Здравствуйте! Это сообщение проверяет кириллицу: ёжик, щука, объём. Конец связи, до встречи."


async def test_message_cyrillic_end_to_end(api: Api) -> None:
    status_url = f"{api.web.url}/status"
    message = await api.run(
        lambda c: c.messages.create(
            to="client:alice", from_="+14155550100", body=CYRILLIC, status_callback=status_url
        )
    )
    assert message.sid.startswith("SM") and message.status == "queued" and message.direction == "outbound-api"
    assert message.body == CYRILLIC and message.num_segments == "2"  # 90 UCS-2 units: two segments
    await api.messaging.drain(5)
    await api.callbacks.drain(5)
    [sent] = api.sender.sent
    assert sent.parsed.method == "MESSAGE" and str(sent.parsed.uri) == "sip:alice@127.0.0.1"
    assert sent.parsed.content_type == "text/plain;charset=UTF-8"
    assert sent.parsed.body == CYRILLIC.encode("utf-8") and sent.wire.endswith(CYRILLIC.encode("utf-8"))
    callbacks = await api.web.wait_for("/status", 3)
    assert [c.form["MessageStatus"] for c in callbacks] == ["sending", "sent", "delivered"]
    validator = RequestValidator(TOKEN)
    assert all(validator.validate(c.url, c.form, c.headers["X-Twilio-Signature"]) for c in callbacks)
    fetched = await api.run(lambda c: c.messages(message.sid).fetch())
    assert fetched.status == "delivered" and fetched.body == CYRILLIC and fetched.date_sent is not None
    listed = await api.run(lambda c: c.messages.list(to="client:alice"))
    assert [m.sid for m in listed] == [message.sid]


async def test_message_undelivered_reported(api: Api) -> None:
    api.sender.answers["+14155550142"] = 404
    message = await api.run(lambda c: c.messages.create(to="+14155550142", from_="+14155550100", body="hi"))
    await api.messaging.drain(5)
    fetched = await api.run(lambda c: c.messages(message.sid).fetch())
    assert fetched.status == "undelivered" and fetched.error_code == 30003
    assert fetched.error_message == "Unreachable destination handset"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"to": "", "from_": "+14155550100", "body": "x"}, 21604),
        ({"to": "+12", "from_": "+14155550100", "body": "x"}, 21211),
        ({"to": "+14155550142", "from_": "", "body": "x"}, 21603),
        ({"to": "+14155550142", "from_": "not valid!", "body": "x"}, 21212),
        ({"to": "+14155550142", "from_": "+14155550100", "body": ""}, 21602),
        ({"to": "+14155550142", "from_": "+14155550100", "body": "   "}, 21602),
        ({"to": "+14155550142", "from_": "+14155550100", "body": "x" * 1601}, 21617),
        ({"to": "+14155550142", "from_": "+14155550100", "body": "x", "status_callback": "nope"}, 21609),
    ],
)
async def test_message_validation(api: Api, params: dict[str, str], code: int) -> None:
    assert await api.error(lambda c: c.messages.create(**params)) == (400, code)
    assert api.sender.sent == []


async def test_message_limits_accepted(api: Api) -> None:
    longest = await api.run(
        lambda c: c.messages.create(to="+14155550142", from_="Trunkline", body="я" * 1600)
    )
    assert longest.from_ == "Trunkline" and longest.num_segments == "24"  # 1,600 UCS-2 units / 67
    await api.messaging.drain(5)
    assert api.sender.sent[0].from_ == "Trunkline" and len(api.sender.sent[0].body) == 1600
