"""Load and robustness end to end: 200 calls at 20 calls/s, and a garbage flood at 1,000 datagrams/s."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from pathlib import Path

import pytest

from tests.interop.conftest import StartServer, requires_sipp, sip_address
from tests.peers.sipp import Sipp

pytestmark = [requires_sipp, pytest.mark.timeout(90)]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rfc4475"
# RFC 4475 section 3.1.2: the invalid messages.
INVALID = (
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "baddate",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
)
VALID_OPTIONS = (
    b"OPTIONS sip:service@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKflood;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:f@127.0.0.1>;tag=1\r\nTo: <sip:service@127.0.0.1>\r\n"
    b"Call-ID: flood\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def garbage(rng: random.Random) -> list[bytes]:
    """Random bytes, truncated messages and the RFC 4475 invalid set."""
    out = [(FIXTURES / f"{name}.dat").read_bytes() for name in INVALID]
    for _ in range(40):
        out.append(rng.randbytes(rng.randint(1, 1400)))
        cut = rng.randint(1, len(VALID_OPTIONS) - 1)
        out.append(VALID_OPTIONS[:cut])
        noisy = bytearray(VALID_OPTIONS)
        for _ in range(5):
            noisy[rng.randrange(len(noisy))] = rng.randrange(256)
        out.append(bytes(noisy))
    return out


async def flood(dest: tuple[str, int], rate: int, seconds: float, seed: int = 4475) -> int:
    """Send garbage datagrams to ``dest`` at ``rate``/s for ``seconds``; return how many."""
    rng = random.Random(seed)
    pool = garbage(rng)
    loop = asyncio.get_running_loop()
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        start = loop.time()
        while (elapsed := loop.time() - start) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                with contextlib.suppress(BlockingIOError):
                    sock.sendto(pool[sent % len(pool)], dest)
                sent += 1
            await asyncio.sleep(0.005)
    return sent


@pytest.mark.slow
async def test_200_calls_at_20_cps(tmp_path: Path, start_server: StartServer) -> None:
    server = await start_server(demo_hangup=None)
    uac = Sipp("uac", remote=sip_address(server), workdir=tmp_path, calls=200, rate=20, timeout=30)
    result = (await uac.run()).check(calls=200, retransmissions=0)
    assert result.failed == 0 and result.unexpected == 0
    assert server.core is not None and server.core.stats.internal_errors == 0


@pytest.mark.slow
async def test_garbage_flood_leaves_calls_working(tmp_path: Path, start_server: StartServer) -> None:
    server = await start_server(demo_hangup=None)
    transport = server.sip.first("udp")
    assert transport is not None
    flooding = asyncio.create_task(flood(transport.local_address, rate=1000, seconds=3.0))
    during = Sipp("uac", remote=sip_address(server), workdir=tmp_path / "during", calls=5, rate=5, timeout=15)
    during_result = await during.run()
    sent = await flooding
    after = Sipp("uac", remote=sip_address(server), workdir=tmp_path / "after", calls=1, timeout=10)
    (await after.run()).check(calls=1)
    during_result.check(calls=5)
    assert sent >= 2500
    assert server.core is not None
    stats = server.core.stats
    assert stats.internal_errors == 0
    assert stats.parse_errors >= sent // 2, stats
