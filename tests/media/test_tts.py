"""Tests for trunkline.media.tts: espeak-ng synthesis, voice mapping and caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import webrtcvad

from trunkline.media.tts import EspeakVoice, TextToSpeech, resolve_voice


def speech_fraction(pcm: npt.NDArray[np.int16], rate: int) -> float:
    vad = webrtcvad.Vad(2)
    n = rate // 50
    frames = [pcm[i : i + n] for i in range(0, pcm.size - n + 1, n)]
    return sum(vad.is_speech(f.tobytes(), rate) for f in frames) / len(frames)


def median_f0(pcm: npt.NDArray[np.int16], rate: int = 8000) -> float:
    """Median autocorrelation pitch (70-400 Hz) over loud 40 ms frames."""
    n = rate // 25
    lo, hi = rate // 400, rate // 70
    pitches = []
    for i in range(0, pcm.size - n, n):
        f = pcm[i : i + n].astype(np.float64)
        if np.sqrt(np.mean(f**2)) < 1000:
            continue
        f -= f.mean()
        ac = np.correlate(f, f, "full")[n - 1 :]
        pitches.append(rate / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(pitches))


@pytest.fixture(scope="module")
def tts() -> TextToSpeech:
    return TextToSpeech()


def test_one_two_three_at_8khz_is_plausible_speech(tts: TextToSpeech) -> None:
    pcm = tts.synthesize_sync("one two three", sample_rate=8000)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    duration = pcm.size / 8000
    assert 0.5 < duration < 3.0  # three short words
    rms = np.sqrt(np.mean(pcm.astype(np.float64) ** 2))
    assert rms > 1000  # clearly audible, not near silence
    assert speech_fraction(pcm, 8000) > 0.6  # voiced, speech-like frames
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(pcm.size, 1 / 8000)
    assert spec[(freqs > 80) & (freqs < 1500)].sum() > 0.5 * spec.sum()  # energy where voices live


def test_longer_text_takes_longer(tts: TextToSpeech) -> None:
    short = tts.synthesize_sync("one two three")
    long = tts.synthesize_sync("one two three four five six seven eight nine ten")
    assert long.size > 2.5 * short.size


def test_languages_and_genders_produce_different_audio(tts: TextToSpeech) -> None:
    text = "one two three"
    en = tts.synthesize_sync(text, language="en-US")
    fr = tts.synthesize_sync(text, language="fr-FR")
    de = tts.synthesize_sync(text, language="de-DE")
    woman = tts.synthesize_sync(text, voice="woman", language="en-US")
    for a, b in [(en, fr), (en, de), (fr, de), (en, woman)]:
        assert a.size != b.size or not np.array_equal(a, b)
    assert speech_fraction(fr, 8000) > 0.5 and speech_fraction(de, 8000) > 0.5

    assert median_f0(woman) > 1.5 * median_f0(en)  # the female variant speaks about an octave higher
    assert 70 < median_f0(en) < 160


def test_output_rate_follows_target(tts: TextToSpeech) -> None:
    a8 = tts.synthesize_sync("hello", sample_rate=8000)
    a16 = tts.synthesize_sync("hello", sample_rate=16000)
    assert a16.size == pytest.approx(2 * a8.size, rel=0.01)


@pytest.mark.parametrize(
    ("voice", "language", "expected"),
    [
        ("man", "en-US", EspeakVoice("en-us")),
        ("woman", "en-GB", EspeakVoice("en", "f3")),
        ("alice", "fr-FR", EspeakVoice("fr", "f3")),
        ("man", "de-DE", EspeakVoice("de")),
        ("man", "es-ES", EspeakVoice("es")),
        ("man", "es-MX", EspeakVoice("es-419")),
        ("man", "pt-BR", EspeakVoice("pt-br")),
        ("man", "zh-CN", EspeakVoice("cmn")),
        ("Polly.Amy", None, EspeakVoice("en", "f3")),
        ("Polly.Joanna-Neural", "en-US", EspeakVoice("en-us", "f3")),
        ("Polly.Hans", None, EspeakVoice("de")),
        ("Google.fr-FR-Standard-A", None, EspeakVoice("fr")),
        ("Polly.Nobody", "it-IT", EspeakVoice("it")),
        ("robot", "xx-YY", EspeakVoice("en-us")),
        (None, None, EspeakVoice("en-us")),
    ],
)
def test_resolve_voice(voice: str | None, language: str | None, expected: EspeakVoice) -> None:
    assert resolve_voice(voice, language) == expected


def test_unknown_voice_and_language_still_speak(tts: TextToSpeech) -> None:
    pcm = tts.synthesize_sync("hello there", voice="Polly.Unknown", language="tlh-KX")
    assert pcm.size > 2000 and np.abs(pcm).max() > 3000


async def test_async_synthesis_memory_and_disk_cache(tmp_path: Path) -> None:
    first = TextToSpeech(tmp_path)
    a = await first.synthesize("cache me please", voice="woman", language="en-GB")
    b = await first.synthesize("cache me please", voice="woman", language="en-GB")
    assert b is a and (first.misses, first.hits) == (1, 1)
    assert len(list(tmp_path.glob("*.wav"))) == 1
    second = TextToSpeech(tmp_path)  # fresh memory, same disk
    c = await second.synthesize("cache me please", voice="woman", language="en-GB")
    assert (second.misses, second.hits) == (0, 1)
    np.testing.assert_array_equal(a, c)
    d = await second.synthesize("cache me please", voice="man", language="en-GB")
    assert second.misses == 1 and not np.array_equal(c[: min(c.size, d.size)], d[: min(c.size, d.size)])


async def test_memory_lru_is_bounded() -> None:
    tts = TextToSpeech(memory_entries=2)
    for word in ("alpha", "bravo", "charlie"):
        await tts.synthesize(word)
    await tts.synthesize("alpha")  # evicted -> synthesized again
    assert tts.misses == 4
    await tts.synthesize("charlie")
    assert tts.hits == 1


def test_ssml_break_adds_silence(tts: TextToSpeech) -> None:
    plain = tts.synthesize_sync("<speak>one two</speak>", ssml=True)
    paused = tts.synthesize_sync('<speak>one <break time="1s"/> two</speak>', ssml=True)
    assert paused.size - plain.size > 0.6 * 8000
