"""The ``trunkline`` command: check-config, version and serve, run as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from trunkline import __version__
from trunkline.gateway.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "trunkline.yaml"
TRUNKLINE = Path(sys.executable).with_name("trunkline")


def run(*args: str, cwd: Path, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trunkline", *args] if module else [str(TRUNKLINE), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRUNKLINE_", "CARRIER1_", "ALICE_"))}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_check_config_example_prints_ok(tmp_path: Path) -> None:
    result = run("check-config", str(EXAMPLE), cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "OK\n", "")
    module = run("check-config", str(EXAMPLE), cwd=tmp_path, module=True)
    assert (module.returncode, module.stdout) == (0, "OK\n")


def test_check_config_prints_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sip:\n  listen: [udp:127.0.0.1:5060, bogus]\n"
        "trunks:\n  - {name: t, host: h.example.com, port: abc}\n"
        "logging: {levle: INFO}\n"
    )
    result = run("check-config", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "bad.yaml: sip.listen[1]: expected a listen address like udp:127.0.0.1:5060, tcp:[::1]:5060 or "
        "tls:127.0.0.1:5061, got 'bogus' (start with udp:, tcp: or tls:)",
        "bad.yaml: logging.levle: unknown key (did you mean 'level'?)",
        "bad.yaml: trunks[0].port: expected an integer 1-65535, got 'abc'",
    ]


def test_check_config_yaml_error_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("sip: {listen: [\n")
    result = run("check-config", "broken.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("broken.yaml: line 2, column 1: invalid YAML: ")
    missing = run("check-config", "nope.yaml", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stdout.startswith("nope.yaml: cannot read the file: ")


def test_version_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run("version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"trunkline {__version__}\n")
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["serve", "--log-level", "chatty"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_answers_healthz_and_stops_on_sigterm(tmp_path: Path) -> None:
    http_port, sip_port = free_port(), free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(
        f"sip: {{listen: ['udp:127.0.0.1:{sip_port}', 'tcp:127.0.0.1:{sip_port}']}}\n"
        f"http: {{listen: '127.0.0.1:{http_port}'}}\n"
    )
    process = subprocess.Popen(
        [str(TRUNKLINE), "serve", "--config", str(config), "--log-level", "info"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1) as reply:
                    body = json.loads(reply.read())
            except OSError:
                time.sleep(0.05)
        assert body is not None and body["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert f"SIP listening on udp:127.0.0.1:{sip_port}" in stderr
    assert f"HTTP listening on http://127.0.0.1:{http_port}" in stderr
    assert "Trunkline stopped" in stderr
    assert (tmp_path / "var" / "demo-account.json").exists()


def test_serve_reports_config_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("http: {listen: nowhere}\n")
    result = run("serve", "--config", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("bad.yaml: http.listen: expected host:port")
