"""What conference participants hear besides each other: hold music, ``waitUrl`` / ``HoldUrl``
documents and announcements.

* :func:`hold_music` is Trunkline's built-in hold music (played for
  :data:`~trunkline.gateway.twiml.verbs.DEFAULT_WAIT_URL` and for a hold without ``HoldUrl``): a
  short synthesised phrase of soft plucked notes, generated once per sample rate with numpy.
* :func:`resolve_audio` fetches a ``waitUrl`` / ``HoldUrl`` / ``AnnounceUrl``: Twilio accepts an
  audio file (played as is) or a TwiML document whose ``<Play>``, ``<Say>``, ``<Pause>`` and
  ``<Redirect>`` verbs are honoured (other verbs are skipped, as Twilio ignores them there).
* :func:`play_forever` loops what :func:`resolve_audio` returned on one call (wait and hold music;
  the prompt overrides the room's audio for that participant until the task is cancelled).
* :func:`render` turns the same items into one PCM buffer, for announcements into the room mix.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urljoin

import numpy as np

from trunkline.codecs.base import PcmArray
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import AudioUrl, Interrupt, PlayItem, PlayOutcome, Silence, Speech
from trunkline.gateway.twiml.parser import TwimlError, parse_twiml
from trunkline.gateway.twiml.webhooks import WebhookClient

__all__ = [
    "HOLD_MUSIC_NOTES",
    "LoopedItem",
    "Playable",
    "hold_music",
    "play_forever",
    "render",
    "resolve_audio",
]

log = logging.getLogger("trunkline.switch.conference")

#: The built-in hold music: (frequency Hz, seconds) of each note of the looped phrase.
HOLD_MUSIC_NOTES: tuple[tuple[float, float], ...] = (
    (261.63, 0.4),  # C4
    (329.63, 0.4),  # E4
    (392.00, 0.4),  # G4
    (523.25, 0.8),  # C5
    (392.00, 0.4),
    (329.63, 0.4),
    (293.66, 0.4),  # D4
    (349.23, 0.4),  # F4
    (440.00, 0.4),  # A4
    (392.00, 0.8),
)
HOLD_MUSIC_PEAK_DBFS = -18.0
#: How many ``<Redirect>`` hops a wait/hold document may take before we give up.
MAX_REDIRECTS = 10
_AUDIO_TYPES = ("audio/", "application/ogg")
_xp: Any = np  # numpy's stubs reject ufuncs on these broadcast float arrays under strict mypy

#: One item to play and how many times (0: until stopped), as ``<Play loop>`` says.
LoopedItem = tuple[PlayItem, int]


@functools.lru_cache(maxsize=8)
def hold_music(rate: int) -> PcmArray:
    """The built-in hold-music phrase at ``rate`` Hz (read-only int16, about 4.6 s, loops cleanly)."""
    lengths = np.array([round(seconds * rate) for _, seconds in HOLD_MUSIC_NOTES])
    freqs = np.repeat(np.array([f for f, _ in HOLD_MUSIC_NOTES]), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    t = (np.arange(freqs.size) - starts) / rate  # time since the note started
    phase = 2.0 * np.pi * freqs * t
    tone = np.sin(phase) + 0.25 * np.sin(2.0 * phase) + 0.08 * np.sin(3.0 * phase)
    # Pluck envelope: 10 ms attack, exponential decay, 20 ms release before the next note.
    note_len = np.repeat(lengths, lengths) / rate
    envelope = _xp.minimum(t / 0.010, 1.0) * np.exp(-3.0 * t) * _xp.clip((note_len - t) / 0.020, 0.0, 1.0)
    peak = 32767.0 * 10.0 ** (HOLD_MUSIC_PEAK_DBFS / 20.0) / 1.33
    pcm: PcmArray = np.round(tone * envelope * peak).astype(np.int16)
    pcm.setflags(write=False)
    return pcm


class Playable(Protocol):
    """The part of a call channel the hold/wait loops use."""

    async def play(
        self, items: Sequence[PlayItem], *, loop: int = 1, interrupt: Interrupt = Interrupt.NONE
    ) -> PlayOutcome:
        """Play ``items`` ``loop`` times (0: until stopped)."""
        ...


def _is_audio(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith(_AUDIO_TYPES)


async def resolve_audio(
    webhooks: WebhookClient,
    url: str,
    method: str,
    params: list[tuple[str, str]],
    auth_token: str,
) -> list[LoopedItem]:
    """What ``url`` says to play: an audio file, or the ``<Say>/<Play>/<Pause>`` of its TwiML.

    ``<Redirect>`` continues with the document it names (the verbs before it are kept). Raises
    :class:`~trunkline.gateway.twiml.webhooks.WebhookError` when the URL cannot be fetched and
    :class:`~trunkline.gateway.twiml.parser.TwimlError` when it returns unusable TwiML.
    """
    items: list[LoopedItem] = []
    for _ in range(MAX_REDIRECTS + 1):
        response = await webhooks.request(url, method, params, auth_token)
        if _is_audio(response.content_type):
            items.append((AudioUrl(url), 1))
            return items
        document = parse_twiml(response.body)
        redirect: v.Redirect | None = None
        for verb in document.verbs:
            if isinstance(verb, v.Say):
                items.append((Speech(verb.text, verb.voice, verb.language), verb.loop))
            elif isinstance(verb, v.Play) and verb.url:
                items.append((AudioUrl(urljoin(url, verb.url)), verb.loop))
            elif isinstance(verb, v.Pause):
                items.append((Silence(float(verb.length)), 1))
            elif isinstance(verb, v.Redirect):
                redirect = verb
                break
            else:
                log.info("%s: <%s> is ignored in wait/hold/announce TwiML", url, type(verb).__name__)
        if redirect is None:
            return items
        url, method = urljoin(url, redirect.url), redirect.method
    raise TwimlError(12200, f"more than {MAX_REDIRECTS} <Redirect> hops from the wait/hold URL")


async def play_forever(channel: Playable, items: Sequence[LoopedItem]) -> None:
    """Play ``items`` in a loop until cancelled (an item with ``loop=0`` repeats on its own)."""
    if not items:
        return
    while True:
        for item, loop in items:
            await channel.play([item], loop=loop)
            if loop == 0:
                return  # ``play`` only returns when stopped from outside


async def render(items: Sequence[LoopedItem], rate: int, tts: _Tts, loader: _Loader) -> PcmArray:
    """All ``items`` as one int16 buffer at ``rate`` (``loop=0`` counts once), for announcements."""
    parts: list[PcmArray] = []
    for item, loop in items:
        if isinstance(item, Speech):
            pcm = await tts.synthesize(item.text, voice=item.voice, language=item.language, sample_rate=rate)
        elif isinstance(item, AudioUrl):
            pcm = await loader.load(item.url, rate)
        elif isinstance(item, Silence):
            pcm = np.zeros(round(item.seconds * rate), dtype=np.int16)
        else:
            continue
        parts.extend([pcm] * max(1, loop))
    if not parts:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(parts).astype(np.int16, copy=False)


class _Tts(Protocol):
    async def synthesize(
        self, text: str, *, voice: str | None = ..., language: str | None = ..., sample_rate: int = ...
    ) -> PcmArray: ...


class _Loader(Protocol):
    async def load(self, url_or_path: str, target_rate: int) -> PcmArray: ...
