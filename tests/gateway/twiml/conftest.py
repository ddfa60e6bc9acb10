"""Fixtures of the TwiML interpreter tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .interpreter_support import App, serve_app


@pytest.fixture
async def twiml_app() -> AsyncIterator[App]:
    """The customer's app on 127.0.0.1 (see :class:`~.interpreter_support.App`)."""
    async for app in serve_app():
        yield app
