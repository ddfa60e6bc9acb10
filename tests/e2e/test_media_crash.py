"""E2E crash safety of recordings: ``kill -9`` of a real ``trunkline serve`` in the middle of ``<Record>``.

The gateway runs as a subprocess on ephemeral ports with its data dir in ``tmp_path``; SIPp calls
it and streams a PCMU tone; the customer's app (aiohttp, in the test's loop) answers
``<Record maxLength="60">``.  About 4 s into the recording the test sends SIGKILL: the WAV under
the recordings dir must open with soundfile and hold the audio up to the last header update
(every second), and after a restart on the same data dir the start-up repair extends its header
over every sample that reached the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile
from aiohttp import web
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (
    ACCOUNT,
    LOOPBACK,
    NUMBER,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    http_base,
    requires_sipp,
    twiml,
)
from tests.peers import audio
from tests.peers.pcap import write_tone_pcap
from tests.peers.ports import free_tcp_port, free_udp_port
from tests.peers.sipp import Sipp, derive_scenario
from trunkline.gateway.api.control import recording_json
from trunkline.gateway.store import SqliteStore

pytestmark = [pytest.mark.timeout(90)]

TRUNKLINE = Path(sys.executable).with_name("trunkline")
TONE_HZ = 700.0
RECORD_SECONDS = 4.5  # not a whole second: the kill lands between header updates


class Gateway:
    """``trunkline serve --config <file>`` as a subprocess, with its stderr in a log file."""

    def __init__(self, config: Path, http_port: int, log: Path) -> None:
        self.config = config
        self.http_port = http_port
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 20.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRUNKLINE_")}
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                str(TRUNKLINE),
                "serve",
                "--config",
                str(self.config),
                "--log-level",
                "info",
                cwd=self.config.parent,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                if self.proc.returncode is not None:
                    raise AssertionError(f"trunkline exited {self.proc.returncode}:\n{self.output()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://{LOOPBACK}:{self.http_port}/healthz") as reply:
                        if reply.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"trunkline did not answer /healthz within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, the recording is cut wherever it is."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(self.proc.wait(), 10) == -signal.SIGKILL

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def write_config(tmp_path: Path, voice_url: str) -> tuple[Path, int, int]:
    """A YAML config on free ports of 127.0.0.1, state under ``tmp_path/var``."""
    sip_port, http_port = free_udp_port(), free_tcp_port()
    config = tmp_path / "trunkline.yaml"
    config.write_text(
        f"""\
sip:
  listen: [udp:{LOOPBACK}:{sip_port}]
rtp:
  address: {LOOPBACK}
  ports: 32000-32199
http:
  listen: {LOOPBACK}:{http_port}
accounts:
  - sid: {ACCOUNT.sid}
    auth_token: {ACCOUNT.auth_token}
numbers:
  - match: "*"
    voice_url: {voice_url}
trunks:
  - name: local
    host: {LOOPBACK}
    inbound_ips: [{LOOPBACK}]
    outbound: false
storage:
  data_dir: {tmp_path / "var"}
logging:
  level: INFO
""",
        encoding="utf-8",
    )
    return config, sip_port, http_port


@pytest.fixture
async def gateways() -> AsyncIterator[list[Gateway]]:
    started: list[Gateway] = []
    yield started
    for gateway in started:
        await gateway.stop()


def rest_client(http_port: int) -> Client:
    """The twilio library's client, pointed at the gateway's REST API."""
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token)
    client.api.base_url = f"http://{LOOPBACK}:{http_port}"
    return client


def header_frames(path: Path) -> tuple[int, int]:
    """(frames the RIFF ``data`` size declares, frames of audio bytes on disk) of a 44-byte-header WAV."""
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:16] == b"WAVEfmt " and raw[36:40] == b"data", raw[:44]
    (declared,) = struct.unpack("<I", raw[40:44])
    return declared // 2, (len(raw) - 44) // 2


def wav_header(frames: int, rate: int = 8000) -> bytes:
    """A canonical 44-byte mono 16-bit PCM WAV header declaring ``frames`` frames."""
    data = 2 * frames
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", data)


async def wait_for_file(directory: Path, pattern: str, timeout: float) -> Path:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = sorted(directory.glob(pattern)) if directory.is_dir() else []
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {pattern} in {directory} within {timeout} s")


@requires_sipp
async def test_sigkill_during_record_leaves_a_playable_wav_repaired_on_restart(
    tmp_path: Path, customer_app: CustomerApp, gateways: list[Gateway]
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.record(max_length=60, timeout=30, action="/recorded")
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/recorded", lambda r: twiml(VoiceResponse()))
    config, sip_port, http_port = write_config(tmp_path, customer_app.url("/voice"))
    gateway = Gateway(config, http_port, tmp_path / "trunkline.log")
    gateways.append(gateway)
    await gateway.start()

    write_tone_pcap(tmp_path / "pcmu.pcap", TONE_HZ, seconds=12.0, codec="PCMU", level_dbfs=-8.0)
    path = derive_scenario(
        "uac_pcap_pcmu", tmp_path, {'pause milliseconds="4000"': 'pause milliseconds="15000"'}
    )
    uac = Sipp(path, remote=f"{LOOPBACK}:{sip_port}", workdir=tmp_path, service=NUMBER, timeout=30)
    recordings = tmp_path / "var" / "recordings"
    await uac.start()
    try:
        (webhook,) = await customer_app.wait_for("/voice", timeout=10)
        assert webhook.form["To"] == NUMBER
        wav = await wait_for_file(recordings, "RE*.wav", timeout=10)
        started = asyncio.get_running_loop().time()
        # While it records, the REST API lists it as Twilio does: in-progress, duration -1.
        client = rest_client(http_port)
        (live,) = await asyncio.to_thread(client.recordings.list, call_sid=webhook.form["CallSid"])
        assert (live.sid, live.status, live.duration, live.source) == (
            wav.stem,
            "in-progress",
            "-1",
            "RecordVerb",
        )
        await asyncio.sleep(RECORD_SECONDS - (asyncio.get_running_loop().time() - started))
        await gateway.kill()
    finally:
        await uac.stop()
    assert customer_app.to("/recorded") == [], "the recording ended before the kill"

    # What kill -9 left: a valid WAV up to the last header update (at least every second).
    declared, on_disk = header_frames(wav)
    assert on_disk >= 3.0 * 8000, f"only {on_disk / 8000:.2f} s reached the disk in {RECORD_SECONDS} s"
    assert on_disk - 8000 - 800 <= declared <= on_disk  # one header interval + one write batch behind
    samples, rate = soundfile.read(wav, dtype="int16")
    assert rate == 8000
    assert samples.size == declared
    assert samples.size >= 2.5 * rate, f"the header covers only {samples.size / rate:.2f} s"
    assert abs(audio.dominant_frequency(samples, rate) - TONE_HZ) < 10
    assert audio.contains_tone(samples[-rate:], rate, TONE_HZ, min_fraction=0.9)

    # Restart on the same data dir: the start-up repair extends the header over the rest.
    restarted = Gateway(config, http_port, tmp_path / "trunkline-restart.log")
    gateways.append(restarted)
    await restarted.start()
    declared_after, on_disk_after = header_frames(wav)
    assert on_disk_after == on_disk  # an int16 mono WAV has no partial frames to cut
    assert declared_after == on_disk, (declared, declared_after, on_disk)
    repaired, rate = soundfile.read(wav, dtype="int16")
    assert repaired.size == on_disk
    assert np.array_equal(repaired[: samples.size], samples)
    assert audio.contains_tone(repaired[-rate:], rate, TONE_HZ, min_fraction=0.9)
    if declared < on_disk:  # the kill landed between header updates (as RECORD_SECONDS intends)
        assert f"repaired recording {wav.name}" in restarted.output()
    # ... and its Recording record, stored in-progress at the start, is completed from the file.
    recording = await asyncio.to_thread(rest_client(http_port).recordings(wav.stem).fetch)
    assert recording.status == "completed"
    assert recording.duration == str(round(on_disk / rate)), (recording.duration, on_disk / rate)
    assert recording.call_sid == webhook.form["CallSid"]
    await restarted.stop()
    assert restarted.proc is not None and restarted.proc.returncode == 0, restarted.output()


async def test_server_start_repairs_partial_wavs_in_recordings_dir(
    tmp_path: Path, trunkline: StartTrunkline
) -> None:
    config = e2e_config(tmp_path, voice_url=None)
    recordings = Path(config.storage.recordings_dir)
    recordings.mkdir(parents=True)
    tone = audio.tone(TONE_HZ, 1.5, 8000, level_dbfs=-8.0)
    pcm = tone.astype("<i2").tobytes()
    # As the recorder leaves a WAV when the process dies: the header from the last update (1 s).
    crashed = recordings / "REcrashed.wav"
    crashed.write_bytes(wav_header(8000) + pcm)
    # A FLAC recording's crash-safe WAV whose header was never updated, with half a sample at the end.
    partial = recordings / "REflac.flac.partial.wav"
    partial.write_bytes(wav_header(0) + pcm + b"\x01")
    finished = recordings / "REfinished.wav"
    audio.write_wav(finished, tone)
    untouched = finished.read_bytes()
    (recordings / "notes.txt").write_text("not a recording")
    (recordings / "REbroken.wav").write_bytes(b"garbage, not RIFF")
    assert soundfile.info(str(crashed)).frames == 8000

    await trunkline(config)

    assert soundfile.info(str(crashed)).frames == tone.size
    assert np.array_equal(soundfile.read(crashed, dtype="int16")[0], tone)
    assert header_frames(partial) == (tone.size, tone.size)  # the odd byte was cut
    assert np.array_equal(soundfile.read(partial, dtype="int16")[0], tone)
    assert finished.read_bytes() == untouched
    assert (recordings / "REbroken.wav").read_bytes() == b"garbage, not RIFF"


async def test_server_start_completes_the_record_of_a_crashed_recording(
    tmp_path: Path, trunkline: StartTrunkline
) -> None:
    """A recording cut by a crash: its record says in-progress, its WAV header says 1 s of 2.6 s."""
    config = e2e_config(tmp_path, voice_url=None)
    recordings = Path(config.storage.recordings_dir)
    recordings.mkdir(parents=True)
    tone = audio.tone(TONE_HZ, 2.6, 8000, level_dbfs=-8.0)
    sid, call_sid = "RE" + "5" * 32, "CA" + "6" * 32
    wav = recordings / f"{sid}.wav"
    wav.write_bytes(wav_header(8000) + tone.astype("<i2").tobytes())
    store = await SqliteStore(config.storage.database).open()
    record = recording_json(ACCOUNT.sid, sid, created=1_790_000_000.0, call_sid=call_sid, source="RecordVerb")
    record["_path"] = str(wav)
    await store.put("recordings", record)
    await store.close()

    server = await trunkline(config)

    assert soundfile.info(str(wav)).frames == tone.size  # the WAV repair ran first
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token)
    client.api.base_url = http_base(server)
    (listed,) = await asyncio.to_thread(client.recordings.list, call_sid=call_sid)
    assert (listed.sid, listed.status, listed.duration) == (sid, "completed", "3")  # 2.6 s
    assert abs(int(listed.duration) - tone.size / 8000) <= 0.5
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{http_base(server)}{listed.uri[:-5]}") as reply,
    ):
        assert reply.status == 200
        served, rate = soundfile.read(io.BytesIO(await reply.read()), dtype="int16")
    assert rate == 8000 and np.array_equal(served, tone)
