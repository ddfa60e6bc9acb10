"""Offline speech recognition on speech synthesised by espeak-ng (the Debian command)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trunkline.media.audiofile import resample_pcm
from trunkline.media.speech import SpeechRecognizer, hints_grammar

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs the espeak-ng command")


def speak(tmp_path: Path, text: str, rate: int = 16000) -> np.ndarray:
    """Speech as a wideband (G.722/Opus) call delivers it, with half a second of silence around."""
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, timeout=30)
    pcm, source_rate = sf.read(wav, dtype="int16")
    silence = np.zeros(rate // 2, dtype=np.int16)
    return np.concatenate([silence, resample_pcm(pcm, source_rate, rate), silence])


@pytest.fixture(scope="module")
def recognizer() -> Iterator[SpeechRecognizer]:
    engine = SpeechRecognizer()
    yield engine
    engine.close()


async def test_hints_make_menu_words_exact(recognizer: SpeechRecognizer, tmp_path: Path) -> None:
    result = await recognizer.recognize(
        speak(tmp_path, "sales"), 16000, hints=["sales", "customer support", "billing"]
    )
    assert result is not None and result.text == "sales"
    assert 0.0 < result.confidence <= 1.0


async def test_multi_word_hint(recognizer: SpeechRecognizer, tmp_path: Path) -> None:
    hints = ["sales", "customer support", "billing", "operator"]
    result = await recognizer.recognize(speak(tmp_path, "customer support"), 16000, hints=hints)
    assert result is not None and result.text == "customer support"


async def test_free_form_and_silence(recognizer: SpeechRecognizer, tmp_path: Path) -> None:
    result = await recognizer.recognize(speak(tmp_path, "hello"), 16000)
    assert result is not None and result.text  # free-form decoding with the language model
    assert await recognizer.recognize(np.zeros(0, dtype=np.int16), 8000) is None


def test_grammar_keeps_known_phrases_only() -> None:
    grammar = hints_grammar(
        ["Sales", "customer support", "zzxq"], vocabulary={"sales", "customer", "support"}
    )
    assert grammar is not None
    assert "(customer support | sales)+" in grammar
    assert hints_grammar(["zzxq"], vocabulary=set()) is None
