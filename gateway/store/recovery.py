"""Recording records across a crash of the process: finishing them at the next start-up.

Every recording's record is stored ``in-progress`` when the recording starts and rewritten when it
finishes (``completed`` with its duration). When the process is killed in between, the start-up
repair (:func:`trunkline.gateway.server.repair_recordings`) makes the WAV describe all the audio
that reached the disk, and :func:`recover_recordings` then finishes the record from that file, so
that nothing recorded is invisible to the REST API:

* audio in the file: ``completed``, ``duration`` the file's length in whole seconds (as Twilio
  reports it, and as a clean finish stores it);
* an empty file, or no file at all: ``absent``, Twilio's status for "no recording file available",
  with error 16101 (recording too short to be processed);
* a file that cannot be read as audio: ``failed``.

A FLAC recording killed before its conversion is converted from its crash-safe
``<name>.partial.wav`` first. Unfinished records whose file lies outside this node's recordings
directory are left alone (another node's live recording, once several nodes share a store).
Recording files with no record at all (the process died between creating the file and storing its
record) are logged and left on disk.

Recording status callbacks are not sent for recovered recordings: their URLs lived in the TwiML
session that died with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import soundfile as sf

from trunkline.gateway.api.envelope import rfc2822
from trunkline.gateway.store.sqlite import SqliteStore
from trunkline.media.recorder import partial_path

__all__ = [
    "TOO_SHORT",
    "FileOutcome",
    "RecoveredRecording",
    "RecoveryReport",
    "finished_record",
    "inspect_recording",
    "recover_recordings",
]

log = logging.getLogger("trunkline.store.recovery")

#: Twilio error 16101: "Recording too short to be processed" (the error of an ``absent`` recording).
TOO_SHORT = 16101

RecoveredStatus = Literal["completed", "absent", "failed"]

#: A recording's file name: its SID, then ``.wav``, ``.flac`` or a FLAC's ``.flac.partial.wav``.
_RECORDING_FILE = re.compile(r"^(RE[0-9A-Za-z]+)\.(?:wav|flac|flac\.partial\.wav)$")


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What a recording file left by a crash holds: the record's final status and audio length."""

    status: RecoveredStatus
    duration_s: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RecoveredRecording:
    """One record finished by :func:`recover_recordings`."""

    sid: str
    status: RecoveredStatus
    duration_s: float
    path: Path


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :func:`recover_recordings` did."""

    recovered: tuple[RecoveredRecording, ...]
    foreign: tuple[str, ...]
    """SIDs of unfinished records whose file is not in this node's recordings directory."""
    orphans: tuple[Path, ...]
    """Recording files of the directory that have no record."""


def inspect_recording(path: Path) -> FileOutcome:
    """The outcome of the recording at ``path`` (already repaired by the start-up repair).

    A FLAC recording whose ``.flac`` was never written is converted from its partial WAV first.
    Blocking (file I/O): run it in a thread from the event loop.
    """
    if path.suffix == ".flac" and not path.exists() and partial_path(path).exists():
        _convert_partial_flac(path)
    if not path.exists():
        return FileOutcome("absent", 0.0, "no file")
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        return FileOutcome("failed", 0.0, f"unreadable: {exc}")
    if info.frames <= 0 or info.samplerate <= 0:
        return FileOutcome("absent", 0.0, "no audio")
    return FileOutcome("completed", info.frames / info.samplerate)


def _convert_partial_flac(path: Path) -> None:
    # As Recorder.finish would have: the crash-safe WAV becomes the FLAC, then goes away.
    partial = partial_path(path)
    try:
        pcm, rate = sf.read(str(partial), dtype="int16", always_2d=True)
    except (RuntimeError, OSError) as exc:
        log.warning("cannot read %s to make %s: %s", partial.name, path.name, exc)
        return
    if pcm.shape[0] == 0:
        return
    tmp = path.with_name(path.name + ".tmp.flac")
    sf.write(str(tmp), pcm, rate, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()


def finished_record(record: Mapping[str, Any], outcome: FileOutcome, *, now: float) -> dict[str, Any]:
    """``record`` finished with ``outcome``: status, whole-second duration, date and error code."""
    done = dict(record)
    done["status"] = outcome.status
    done["duration"] = str(round(outcome.duration_s)) if outcome.status == "completed" else "0"
    done["date_updated"] = rfc2822(now)
    if outcome.status == "absent":
        done["error_code"] = TOO_SHORT
    return done


def _in_directory(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().parent == directory.resolve()
    except OSError:
        return False


def _recording_files(directory: Path) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            match = _RECORDING_FILE.match(entry.name)
            if match and entry.is_file():
                files.setdefault(match.group(1), []).append(Path(entry.path))
    return files


async def recover_recordings(store: SqliteStore, directory: Path, *, now: float) -> RecoveryReport:
    """Finish the records a crash left ``in-progress``/``paused`` from their files in ``directory``.

    Run at start-up, after :func:`~trunkline.gateway.server.repair_recordings` and before any
    call can start a recording; ``now`` (Unix seconds) becomes the records' ``date_updated``.
    """
    recovered: list[RecoveredRecording] = []
    foreign: list[str] = []
    for record in await store.unfinished_recordings():
        sid = str(record.get("sid"))
        raw_path = record.get("_path")
        path = Path(str(raw_path)) if raw_path else None
        if path is None or not _in_directory(path, directory):
            log.warning("recording %s is unfinished but its file %s is not in %s", sid, path, directory)
            foreign.append(sid)
            continue
        outcome = await asyncio.to_thread(inspect_recording, path)
        await store.put("recordings", finished_record(record, outcome, now=now))
        recovered.append(RecoveredRecording(sid, outcome.status, outcome.duration_s, path))
        if outcome.status == "completed":
            log.info(
                "recording %s was cut by an unclean stop: stored completed (%.2f s)", sid, outcome.duration_s
            )
        else:
            log.warning(
                "recording %s was cut by an unclean stop: stored %s (%s)", sid, outcome.status, outcome.reason
            )
    files = await asyncio.to_thread(_recording_files, directory)
    known = await store.existing_keys("recordings", files) if files else set()
    orphans = sorted(path for sid, paths in files.items() if sid not in known for path in paths)
    for path in orphans:
        log.warning("recording file %s has no Recording record: the REST API does not list it", path)
    return RecoveryReport(tuple(recovered), tuple(foreign), tuple(orphans))
