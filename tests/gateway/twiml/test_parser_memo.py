"""parse_twiml memoises documents: the same text gives the same (immutable) Document without
parsing again; failures and very large documents are not memoised."""

from __future__ import annotations

import dataclasses

import pytest

from trunkline.gateway.twiml import parser
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.parser import TwimlError, parse_twiml


def test_same_text_is_parsed_once_and_gives_the_same_document(monkeypatch: pytest.MonkeyPatch) -> None:
    text = '<Response><Say voice="alice">memo test 1</Say><Hangup/></Response>'
    calls: list[object] = []
    real = parser.fromstring

    def counting(document: object, **kwargs: object) -> object:
        calls.append(document)
        return real(document, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(parser, "fromstring", counting)
    first = parse_twiml(text)
    second = parse_twiml(text)
    assert second is first and len(calls) == 1
    assert first.verbs == (v.Say(text="memo test 1", voice="alice"), v.Hangup())
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.verbs = ()  # type: ignore[misc]
    assert parse_twiml(text.encode()) == first  # bytes are their own key, same result


def test_failures_are_raised_every_time() -> None:
    bad = "<Response><Say>memo test 2</Response>"
    for _ in range(2):
        with pytest.raises(TwimlError) as info:
            parse_twiml(bad)
        assert info.value.code == 12100


def test_large_documents_bypass_the_memo() -> None:
    text = "<Response>" + "<Pause/>" * (parser.MEMO_MAX_CHARS // 8 + 1) + "</Response>"
    first = parse_twiml(text)
    second = parse_twiml(text)
    assert first == second and first is not second
    assert len(first.verbs) == parser.MEMO_MAX_CHARS // 8 + 1
