"""Offline speech recognition for ``<Gather input="speech">`` with pocketsphinx.

pocketsphinx ships one acoustic and language model (US English). Free-form speech is decoded with
that language model; when the app gives ``hints`` (Twilio's comma-separated phrases), the decoder
switches to a JSGF grammar of those phrases, which is what makes menus ("sales", "support") and
digit strings reliable offline. Recognition runs on one worker thread (a pocketsphinx decoder is
not re-entrant and its model takes about two seconds to load, so it is loaded once, lazily), never
on the event loop.

The model is wideband (16 kHz): it works well on G.722 and Opus calls. Narrowband G.711 audio
(upsampled, with nothing above 4 kHz) is recognised much less reliably; hints help most there.
Digital silence (runs of exact zeros, as a jitter buffer's comfort silence) derails the decoder's
feature normalisation, so a little dither (about -60 dBFS) is added before decoding.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from trunkline.media.audiofile import resample_pcm

log = logging.getLogger(__name__)

MODEL_RATE = 16000
DITHER = 30  # peak amplitude of the added noise, about -61 dBFS
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True, slots=True)
class Recognition:
    """The transcript and a confidence between 0 and 1."""

    text: str
    confidence: float


def hints_grammar(hints: Sequence[str], vocabulary: set[str] | None = None) -> str | None:
    """A JSGF grammar accepting one or more of the ``hints`` phrases, or None if none is usable.

    Words the model's dictionary does not know (when ``vocabulary`` is given) drop their phrase.
    """
    phrases: list[str] = []
    for hint in hints:
        words = _WORD.findall(hint.lower())
        if words and (vocabulary is None or all(word in vocabulary for word in words)):
            phrases.append(" ".join(words))
    if not phrases:
        return None
    alternatives = " | ".join(sorted(set(phrases)))
    return f"#JSGF V1.0;\ngrammar hints;\npublic <utterance> = ({alternatives})+;\n"


class SpeechRecognizer:
    """Transcribes utterances; share one per process."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trunkline-asr")
        self._decoder: Any = None
        self._grammars: dict[str, str] = {}

    async def recognize(
        self,
        pcm: npt.NDArray[np.int16],
        sample_rate: int,
        *,
        hints: Sequence[str] = (),
        language: str = "en-US",
    ) -> Recognition | None:
        """Transcribe ``pcm``; None when nothing was recognised."""
        if not language.lower().startswith("en"):
            log.warning(
                "speech recognition has only an English model; %s speech decoded as English", language
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._recognize, pcm, sample_rate, tuple(hints))

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _load(self) -> Any:
        if self._decoder is None:
            from pocketsphinx import Decoder

            self._decoder = Decoder(samprate=MODEL_RATE, loglevel="ERROR")
        return self._decoder

    def _search_for(self, decoder: Any, hints: tuple[str, ...]) -> str:
        if not hints:
            return "_default"
        key = "\n".join(hints)
        name = self._grammars.get(key)
        if name is None:
            vocabulary = {
                word for hint in hints for word in _WORD.findall(hint.lower()) if decoder.lookup_word(word)
            }
            grammar = hints_grammar(hints, vocabulary)
            if grammar is None:
                return "_default"
            name = f"hints{len(self._grammars)}"
            decoder.add_jsgf_string(name, grammar)
            self._grammars[key] = name
        return name

    def _recognize(
        self, pcm: npt.NDArray[np.int16], sample_rate: int, hints: tuple[str, ...]
    ) -> Recognition | None:
        if pcm.size == 0:
            return None
        audio = pcm if sample_rate == MODEL_RATE else resample_pcm(pcm, sample_rate, MODEL_RATE)
        noise = np.random.default_rng(len(audio)).integers(-DITHER, DITHER + 1, size=len(audio))
        audio = np.clip(audio.astype(np.int32) + noise, -32768, 32767).astype(np.int16)
        decoder = self._load()
        decoder.activate_search(self._search_for(decoder, hints))
        decoder.start_utt()
        decoder.process_raw(np.ascontiguousarray(audio, dtype=np.int16).tobytes(), full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        if hypothesis is None or not hypothesis.hypstr.strip():
            return None
        words = [seg for seg in decoder.seg() if not seg.word.startswith(("<", "[")) and seg.word != "(NULL)"]
        # pocketsphinx 5 gives each segment's posterior probability as a linear value.
        confidence = sum(float(seg.prob) for seg in words) / len(words) if words else 0.0
        text = re.sub(r"\(\d+\)", "", hypothesis.hypstr).strip()
        return Recognition(text=text, confidence=max(0.0, min(1.0, confidence)))
