"""The built-in demo app, served by Trunkline itself when a number has no ``voice_url``.

It greets the caller and gathers one digit: 1 echoes the digits the caller types, 2 records a
message and plays it back, 3 joins the conference room ``demo``. It is ordinary TwiML over HTTP,
fetched and signed like any customer's app, so it also shows what an app looks like.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from aiohttp import web

DEMO_PREFIX = "/demo"
VOICE_PATH = f"{DEMO_PREFIX}/voice"

_MENU = (
    "<Response>"
    '<Gather numDigits="1" action="menu" method="POST" timeout="8">'
    "<Say>Welcome to Trunkline.</Say>"
    "<Say>Press 1 to hear the digits you type. Press 2 to record a message and hear it back. "
    "Press 3 to join the demo conference.</Say>"
    "</Gather>"
    "<Say>We did not receive any input. Goodbye.</Say>"
    "</Response>"
)


def _twiml(body: str) -> web.Response:
    return web.Response(text=f'<?xml version="1.0" encoding="UTF-8"?>{body}', content_type="text/xml")


async def _form(request: web.Request) -> dict[str, str]:
    if request.method == "POST":
        return {key: str(value) for key, value in (await request.post()).items()}
    return dict(request.query)


async def voice(request: web.Request) -> web.Response:
    """The greeting and main menu."""
    return _twiml(_MENU)


async def menu(request: web.Request) -> web.Response:
    """Route the menu choice."""
    choice = (await _form(request)).get("Digits", "")
    if choice == "1":
        return _twiml(
            "<Response><Say>Type some digits, then press pound.</Say>"
            '<Gather action="echo" finishOnKey="#" timeout="10"/>'
            '<Redirect method="POST">voice</Redirect></Response>'
        )
    if choice == "2":
        return _twiml(
            "<Response><Say>Record your message after the beep. Press pound when you are done.</Say>"
            '<Record action="playback" maxLength="30" timeout="5" finishOnKey="#"/>'
            '<Redirect method="POST">voice</Redirect></Response>'
        )
    if choice == "3":
        return _twiml(
            "<Response><Say>Joining the demo conference.</Say>"
            '<Dial><Conference startConferenceOnEnter="true" endConferenceOnExit="false">demo</Conference>'
            "</Dial></Response>"
        )
    return _twiml(
        '<Response><Say>That is not an option.</Say><Redirect method="POST">voice</Redirect></Response>'
    )


async def echo(request: web.Request) -> web.Response:
    """Say back the digits typed."""
    digits = (await _form(request)).get("Digits", "")
    spoken = " ".join({"*": "star", "#": "pound"}.get(d, d) for d in digits) or "no digits"
    return _twiml(
        f"<Response><Say>You typed {escape(spoken)}.</Say>"
        '<Gather action="echo" finishOnKey="#" timeout="10"><Say>Type more digits, then press pound.</Say>'
        '</Gather><Redirect method="POST">voice</Redirect></Response>'
    )


async def playback(request: web.Request) -> web.Response:
    """Play the message just recorded."""
    url = (await _form(request)).get("RecordingUrl", "")
    if not url:
        return _twiml(
            '<Response><Say>Nothing was recorded.</Say><Redirect method="POST">voice</Redirect></Response>'
        )
    return _twiml(
        f"<Response><Say>Here is your message.</Say><Play>{escape(url)}</Play>"
        '<Redirect method="POST">voice</Redirect></Response>'
    )


def add_demo_routes(app: web.Application) -> None:
    """Serve the demo app under ``/demo/`` (GET or POST, as a customer's app would)."""
    for name, handler in (("voice", voice), ("menu", menu), ("echo", echo), ("playback", playback)):
        app.router.add_route("*", f"{DEMO_PREFIX}/{name}", handler)
