"""Text-to-speech for ``<Say>`` through the espeak-ng library shipped by ``espeakng-loader``.

espeak-ng is driven through ctypes in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode: the
synth callback collects 22,050 Hz int16 chunks while ``espeak_Synth`` runs.
The library is not re-entrant, so every call into it happens on one dedicated
worker thread; :meth:`TextToSpeech.synthesize` is a coroutine that awaits that
thread, then resamples to the stream rate.  Results are cached in an in-memory
LRU and, optionally, on disk as WAV keyed by (text, espeak voice, rate).

Twilio voice names (``man``, ``woman``, ``alice``, ``Polly.*``, ``Google.*``)
and BCP 47 ``language`` tags are mapped onto the closest espeak-ng voice and
variant by :func:`resolve_voice`; anything unknown falls back to US English,
never to an error.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import espeakng_loader
import numpy as np
import numpy.typing as npt
import soundfile as sf

from trunkline.media.audiofile import resample_pcm

__all__ = ["EspeakVoice", "TextToSpeech", "TtsError", "resolve_voice"]

PcmArray = npt.NDArray[np.int16]

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SSML = 0x10
_ESPEAK_RATE = 1
_EE_OK = 0
_CACHE_VERSION = 1

DEFAULT_VOICE = "en-us"

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class TtsError(RuntimeError):
    """espeak-ng could not be loaded or failed to synthesize."""


@dataclass(frozen=True, slots=True)
class EspeakVoice:
    """An espeak-ng voice file name plus an optional variant (``f3``, ``m3``...)."""

    name: str
    variant: str | None = None

    @property
    def spec(self) -> str:
        """The string for ``espeak_SetVoiceByName``, e.g. ``en-us+f3``."""
        return f"{self.name}+{self.variant}" if self.variant else self.name


# Polly voice -> (gender, language) for the voices Twilio lists.
_POLLY: dict[str, tuple[str, str]] = {
    **{n: ("f", "en-US") for n in ("joanna", "salli", "kimberly", "kendra", "ivy", "ruth", "danielle")},
    **{n: ("m", "en-US") for n in ("matthew", "joey", "justin", "kevin", "stephen", "gregory")},
    **{n: ("f", "en-GB") for n in ("amy", "emma")},
    **{n: ("m", "en-GB") for n in ("brian", "arthur")},
    **{n: ("f", "en-AU") for n in ("nicole", "olivia")},
    "russell": ("m", "en-AU"),
    **{n: ("f", "en-IN") for n in ("aditi", "raveena", "kajal")},
    "geraint": ("m", "cy-GB"),
    **{n: ("f", "fr-FR") for n in ("celine", "céline", "lea", "léa")},
    **{n: ("m", "fr-FR") for n in ("mathieu", "remi", "rémi")},
    **{n: ("f", "fr-CA") for n in ("chantal", "gabrielle")},
    **{n: ("f", "de-DE") for n in ("marlene", "vicki")},
    **{n: ("m", "de-DE") for n in ("hans", "daniel")},
    **{n: ("f", "es-ES") for n in ("conchita", "lucia", "lucía")},
    **{n: ("m", "es-ES") for n in ("enrique", "sergio")},
    **{n: ("f", "es-US") for n in ("lupe", "penelope", "penélope")},
    **{n: ("m", "es-US") for n in ("miguel", "pedro")},
    "mia": ("f", "es-MX"),
    "andres": ("m", "es-MX"),
    **{n: ("f", "it-IT") for n in ("carla", "bianca")},
    **{n: ("m", "it-IT") for n in ("giorgio", "adriano")},
    **{n: ("f", "pt-BR") for n in ("vitoria", "vitória", "camila")},
    **{n: ("m", "pt-BR") for n in ("ricardo", "thiago")},
    **{n: ("f", "pt-PT") for n in ("ines", "inês")},
    "cristiano": ("m", "pt-PT"),
    "lotte": ("f", "nl-NL"),
    "ruben": ("m", "nl-NL"),
    "naja": ("f", "da-DK"),
    "mads": ("m", "da-DK"),
    "liv": ("f", "nb-NO"),
    **{n: ("f", "pl-PL") for n in ("ewa", "maja")},
    **{n: ("m", "pl-PL") for n in ("jacek", "jan")},
    "tatyana": ("f", "ru-RU"),
    "maxim": ("m", "ru-RU"),
    "astrid": ("f", "sv-SE"),
    "filiz": ("f", "tr-TR"),
    "carmen": ("f", "ro-RO"),
    "mizuki": ("f", "ja-JP"),
    "takumi": ("m", "ja-JP"),
    "seoyeon": ("f", "ko-KR"),
    "zhiyu": ("f", "cmn-CN"),
    "hannah": ("f", "de-AT"),
    "karl": ("m", "is-IS"),
    "dora": ("f", "is-IS"),
}

# Tags whose best espeak voice is not what the language-priority table gives.
_LANGUAGE_OVERRIDES = {
    "zh": "cmn",
    "zh-cn": "cmn",
    "zh-tw": "cmn",
    "cmn-cn": "cmn",
    "zh-hk": "yue",
    "en-ca": "en-us",
    "es-us": "es-419",
    "no": "nb",
    "nb-no": "nb",
    "fil-ph": "id",
}

_FEMALE_VARIANT = "f3"
_MALE_VARIANT = None  # espeak's default variant is a male voice


@cache
def _language_index() -> dict[str, str]:
    """Map each language tag espeak-ng's voice files declare to the best voice file name.

    Parsed from ``espeak-ng-data/lang/**`` ``language <tag> [priority]`` lines;
    a lower priority wins and 5 is espeak's default.
    """
    best: dict[str, tuple[int, str]] = {}
    root = Path(espeakng_loader.get_data_path()) / "lang"
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        name = path.name.lower()
        try:
            lines = path.read_text("utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            if len(words) >= 2 and words[0] == "language":
                prio = int(words[2]) if len(words) > 2 and words[2].isdigit() else 5
                tag = words[1].lower()
                if tag not in best or prio < best[tag][0]:
                    best[tag] = (prio, name)
        best.setdefault(name, (0, name))
    return {tag: name for tag, (_, name) in best.items()}


def _voice_for_language(language: str | None) -> str:
    if not language:
        return DEFAULT_VOICE
    tag = language.strip().lower().replace("_", "-")
    index = _language_index()
    candidates = [tag]
    parts = tag.split("-")
    if len(parts) > 1:
        candidates.append(parts[0])
    for cand in candidates:
        if cand in _LANGUAGE_OVERRIDES:
            return _LANGUAGE_OVERRIDES[cand]
        if cand in index:
            return index[cand]
    return DEFAULT_VOICE


def resolve_voice(voice: str | None, language: str | None) -> EspeakVoice:
    """Choose the espeak-ng voice for a Twilio ``<Say voice language>`` pair; never fails.

    ``language`` wins when given; a ``Polly.<Name>`` or ``Google.<lang>-...`` voice
    supplies the language otherwise.  ``woman``/``alice`` and female Polly voices
    get a female variant, everything else espeak's default male voice.
    """
    v = (voice or "man").strip()
    lower = v.lower()
    gender = "m"
    voice_language: str | None = None
    if lower in ("woman", "alice"):
        gender = "f"
    elif lower.startswith("polly."):
        name = lower.split(".", 1)[1].split("-", 1)[0]
        gender, voice_language = _POLLY.get(name, ("m", None))
    elif lower.startswith("google."):
        # Google.<ll>-<CC>-<Model>-<Letter>, e.g. Google.en-GB-Neural2-A
        parts = v.split(".", 1)[1].split("-")
        if len(parts) >= 2:
            voice_language = f"{parts[0]}-{parts[1]}"
    name = _voice_for_language(language or voice_language)
    return EspeakVoice(name, _FEMALE_VARIANT if gender == "f" else _MALE_VARIANT)


class _Espeak:
    """The process-wide espeak-ng instance; only ever touched from the TTS worker thread."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as exc:
            raise TtsError(f"cannot load espeak-ng: {exc}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if rate <= 0:
            raise TtsError(f"espeak_Initialize failed ({rate}) with data path {data_path!r}")
        self.sample_rate = int(rate)
        self._lib = lib
        self._chunks: list[PcmArray] = []
        self._callback = _SynthCallback(self._on_samples)  # keep a reference alive
        lib.espeak_SetSynthCallback(self._callback)

    def _on_samples(self, wav: Any, numsamples: int, events: Any) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).astype(np.int16))
        return 0

    def synth(self, text: str, voice: EspeakVoice, rate_wpm: int, ssml: bool) -> PcmArray:
        if self._lib.espeak_SetVoiceByName(voice.spec.encode()) != _EE_OK and (
            self._lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK
        ):
            self._lib.espeak_SetVoiceByName(DEFAULT_VOICE.encode())
        self._lib.espeak_SetParameter(_ESPEAK_RATE, rate_wpm, 0)
        data = text.encode("utf-8")
        buf = ctypes.create_string_buffer(data)
        self._chunks = []
        flags = _CHARS_UTF8 | (_SSML if ssml else 0)
        err = self._lib.espeak_Synth(buf, len(data) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
        if err != _EE_OK:
            raise TtsError(f"espeak_Synth failed with error {err}")
        chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


_engine: _Espeak | None = None
_engine_lock = threading.Lock()
# espeak-ng is not re-entrant: one worker thread for every synthesis in the process.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trunkline-tts")


def _synthesize_blocking(
    text: str, voice: EspeakVoice, rate_wpm: int, ssml: bool, target_rate: int
) -> PcmArray:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Espeak()
        raw = _engine.synth(text, voice, rate_wpm, ssml)
        native = _engine.sample_rate
    return resample_pcm(raw, native, target_rate)


class TextToSpeech:
    """Cached espeak-ng synthesis to int16 PCM at a stream's rate.

    ``cache_dir`` enables an on-disk WAV cache shared across restarts;
    ``memory_entries`` bounds the in-memory LRU.  ``rate_wpm`` is espeak's
    speaking rate in words per minute (its default is 175).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        memory_entries: int = 256,
        rate_wpm: int = 165,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.memory_entries = memory_entries
        self.rate_wpm = rate_wpm
        self._lru: OrderedDict[str, PcmArray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _key(self, text: str, voice: EspeakVoice, sample_rate: int, ssml: bool) -> str:
        raw = json.dumps([_CACHE_VERSION, text, voice.spec, self.rate_wpm, sample_rate, ssml])
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def _remember(self, key: str, pcm: PcmArray) -> None:
        pcm.setflags(write=False)
        self._lru[key] = pcm
        self._lru.move_to_end(key)
        while len(self._lru) > self.memory_entries:
            self._lru.popitem(last=False)

    def _disk_load(self, key: str) -> PcmArray | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{key}.wav"
        try:
            data, _ = sf.read(path, dtype="int16")
        except (OSError, sf.LibsndfileError, RuntimeError):
            return None
        return np.ascontiguousarray(data, dtype=np.int16)

    def _disk_store(self, key: str, pcm: PcmArray, sample_rate: int) -> None:
        if self.cache_dir is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / f"{key}.wav"
        tmp = path.with_name(f"{key}.{os.getpid()}.tmp.wav")
        sf.write(tmp, pcm, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)

    async def synthesize(
        self,
        text: str,
        *,
        voice: str | None = "man",
        language: str | None = "en-US",
        sample_rate: int = 8000,
        ssml: bool = False,
    ) -> PcmArray:
        """Speak ``text`` with a Twilio voice/language, as read-only mono int16 at ``sample_rate``."""
        ev = resolve_voice(voice, language)
        key = self._key(text, ev, sample_rate, ssml)
        if key in self._lru:
            self.hits += 1
            self._lru.move_to_end(key)
            return self._lru[key]
        loop = asyncio.get_running_loop()
        pcm = await loop.run_in_executor(None, self._disk_load, key) if self.cache_dir is not None else None
        if pcm is not None:
            self.hits += 1
        else:
            self.misses += 1
            pcm = await loop.run_in_executor(
                _executor, _synthesize_blocking, text, ev, self.rate_wpm, ssml, sample_rate
            )
            if self.cache_dir is not None:
                await loop.run_in_executor(None, self._disk_store, key, pcm, sample_rate)
        self._remember(key, pcm)
        return pcm

    def synthesize_sync(
        self,
        text: str,
        *,
        voice: str | None = "man",
        language: str | None = "en-US",
        sample_rate: int = 8000,
        ssml: bool = False,
    ) -> PcmArray:
        """Blocking variant of :meth:`synthesize` for tools and tests (never on the event loop)."""
        ev = resolve_voice(voice, language)
        key = self._key(text, ev, sample_rate, ssml)
        if key in self._lru:
            self.hits += 1
            return self._lru[key]
        pcm = self._disk_load(key)
        if pcm is None:
            self.misses += 1
            pcm = _executor.submit(_synthesize_blocking, text, ev, self.rate_wpm, ssml, sample_rate).result()
            self._disk_store(key, pcm, sample_rate)
        else:
            self.hits += 1
        self._remember(key, pcm)
        return pcm
