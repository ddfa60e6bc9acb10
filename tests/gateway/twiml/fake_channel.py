"""An in-memory CallChannel for interpreter tests: scripted caller input, a log of what happened."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import (
    CallEnded,
    DialResult,
    Interrupt,
    PlayItem,
    PlayOutcome,
    QueueResult,
    RecordOptions,
    RecordResult,
    ReferResult,
    SpeechOptions,
    SpeechResult,
)


@dataclass
class FakeChannel:
    """``digits`` arrive one per ``next_digit`` call (None entries = a timeout); ``hangup_after``
    ends the call when that many plays have happened."""

    call_sid: str = "CA" + "0" * 32
    digits: list[str | None] = field(default_factory=list)
    digits_during_play: str = ""
    speech: SpeechResult | None = None
    record_result: RecordResult | None = None
    dial_result: DialResult | None = None
    hangup_after_plays: int | None = None
    answered: bool = False
    ended: bool = False
    log: list[tuple[str, object]] = field(default_factory=list)
    plays: int = 0

    def _check(self) -> None:
        if self.ended:
            raise CallEnded

    async def answer(self) -> None:
        self._check()
        if not self.answered:
            self.answered = True
            self.log.append(("answer", None))

    async def reject(self, sip_status: int) -> None:
        self.log.append(("reject", sip_status))
        self.ended = True

    async def hangup(self) -> None:
        if not self.ended:
            self.log.append(("hangup", None))
        self.ended = True

    async def play(
        self, items: Sequence[PlayItem], *, loop: int = 1, interrupt: Interrupt = Interrupt.NONE
    ) -> PlayOutcome:
        self._check()
        self.plays += 1
        self.log.append(("play", (tuple(items), loop, interrupt)))
        if self.hangup_after_plays is not None and self.plays >= self.hangup_after_plays:
            self.ended = True
            raise CallEnded
        await asyncio.sleep(0)
        if interrupt & Interrupt.DTMF and self.digits_during_play:
            self.digits[:0] = list(self.digits_during_play)
            self.digits_during_play = ""
            return PlayOutcome.INTERRUPTED
        return PlayOutcome.COMPLETED

    async def send_digits(self, digits: str) -> None:
        self._check()
        self.log.append(("send_digits", digits))

    async def next_digit(self, timeout: float) -> str | None:
        self._check()
        if not self.digits:
            return None
        return self.digits.pop(0)

    def flush_digits(self) -> None:
        self.log.append(("flush", None))

    async def record(self, options: RecordOptions) -> RecordResult:
        self.log.append(("record", options))
        assert self.record_result is not None
        if self.record_result.hung_up:
            self.ended = True
        return self.record_result

    async def recognize(self, options: SpeechOptions) -> SpeechResult | None:
        self._check()
        self.log.append(("recognize", options))
        return self.speech

    async def dial(self, dial: v.Dial) -> DialResult:
        self._check()
        self.log.append(("dial", dial))
        assert self.dial_result is not None
        return self.dial_result

    async def enqueue(self, enqueue: v.Enqueue) -> QueueResult:
        self.log.append(("enqueue", enqueue))
        return QueueResult("hangup", "QU" + "0" * 32, 3)

    async def refer(self, refer: v.Refer) -> ReferResult:
        self.log.append(("refer", refer))
        return ReferResult("completed", 202)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.log]
