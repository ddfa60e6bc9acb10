"""Shared fixtures of the media tests."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from trunkline.gateway.config import RtpConfig
from trunkline.media.engine import MediaEngine


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    """A media engine on its real 20 ms clock, on a random slice of the port range."""
    base = random.randrange(30000, 60000, 2000)
    eng = MediaEngine(RtpConfig("127.0.0.1", base, base + 1999))
    await eng.start()
    yield eng
    await eng.stop()
