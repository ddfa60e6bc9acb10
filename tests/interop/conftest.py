"""Fixtures for the SIPp / pjsua2 end-to-end tests: an in-process Trunkline on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from trunkline.gateway.config import Config, Endpoint, HttpConfig, ListenAddress, RtpConfig, SipConfig, Trunk
from trunkline.gateway.server import Server

LOOPBACK = "127.0.0.1"
ALICE = Endpoint("alice", "alice-secret", "AC" + "0" * 32)

requires_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")


def make_config(
    *,
    trunks: tuple[Trunk, ...] | None = None,
    endpoints: tuple[Endpoint, ...] = (ALICE,),
    t1_ms: int = 500,
) -> Config:
    """Trunkline on 127.0.0.1 (UDP, free port); loopback is a trusted trunk by default."""
    if trunks is None:
        trunks = (
            Trunk("local", LOOPBACK, inbound_ips=(ipaddress.ip_network("127.0.0.1/32"),), outbound=False),
        )
    sip = dataclasses.replace(SipConfig(), listen=(ListenAddress("udp", LOOPBACK, 0),))
    sip = dataclasses.replace(sip, timers=dataclasses.replace(sip.timers, t1=t1_ms))
    return dataclasses.replace(
        Config.default(),
        sip=sip,
        http=HttpConfig(port=0),
        rtp=RtpConfig(LOOPBACK, 30000, 30999),
        trunks=trunks,
        endpoints=endpoints,
    )


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the demo account file goes to ./var


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """``await start_server(config=None, demo_hangup=None)`` -> started ``Server``."""
    servers: list[Server] = []

    async def start(config: Config | None = None, demo_hangup: float | None = None) -> Server:
        server = Server(config or make_config(), demo_hangup=demo_hangup)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def sip_address(server: Server) -> str:
    """``host:port`` of the server's UDP transport."""
    transport = server.sip.first("udp")
    assert transport is not None
    host, port = transport.local_address
    return f"{host}:{port}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: end-to-end load tests taking several seconds")
