"""TwiML documents to typed verbs, with Twilio's defaults and error codes.

The XML is read with ``defusedxml`` (no DTDs, no entity expansion, no network access), so a hostile
document cannot expand or fetch anything. What Twilio treats as fatal raises :class:`TwimlError`:

* 12100 *Document parse failure*: not well-formed XML, a DTD or entity, an empty body;
* 12200 *Schema validation*: a root other than ``<Response>``, an unknown verb, noun or attribute,
  a verb nested where it may not be, a verb missing what it cannot work without.

An attribute with an invalid value is not fatal: Twilio logs a warning with the attribute's own code
(13313 *Gather: Invalid timeout value* and so on) and uses the default, and so does this parser,
returning the warnings in :attr:`Document.warnings`.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from trunkline.gateway.twiml import verbs as v

DOCUMENT_PARSE_FAILURE = 12100
SCHEMA_VALIDATION = 12200


class TwimlError(Exception):
    """A TwiML document that cannot run, with Twilio's error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _BadValue(ValueError):
    """An attribute value a converter refuses; becomes a warning with the attribute's code."""


Converter = Callable[[str], Any]


def _int_at_least(minimum: int) -> Converter:
    def convert(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise _BadValue(f"expected an integer, got {raw!r}") from None
        if value < minimum:
            raise _BadValue(f"expected an integer >= {minimum}, got {raw!r}")
        return value

    return convert


def _boolean(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise _BadValue(f"expected true or false, got {raw!r}")


def _method(raw: str) -> str:
    text = raw.strip().upper()
    if text in ("GET", "POST"):
        return text
    raise _BadValue(f"expected GET or POST, got {raw!r}")


def _one_of(*choices: str) -> Converter:
    def convert(raw: str) -> str:
        text = raw.strip()
        if text in choices:
            return text
        raise _BadValue(f"expected one of {', '.join(choices)}, got {raw!r}")

    return convert


def _text(raw: str) -> str:
    return raw.strip()


def _url(raw: str) -> str:
    text = raw.strip()
    if not text:
        raise _BadValue("expected a URL, got an empty value")
    return text


def _events(*choices: str) -> Converter:
    def convert(raw: str) -> tuple[str, ...]:
        items = tuple(item for item in re.split(r"[\s,]+", raw.strip()) if item)
        bad = [item for item in items if item not in choices]
        if bad:
            raise _BadValue(f"unknown event {bad[0]!r}; expected some of {', '.join(choices)}")
        return items

    return convert


_KEYS = re.compile(r"[0-9*#]*")
_DIGITS = re.compile(r"[0-9*#wWA-Da-d]+")


def _finish_on_key(raw: str) -> str:
    # An empty finishOnKey is valid: it turns the finishing key off.
    if _KEYS.fullmatch(raw.strip()):
        return raw.strip()
    raise _BadValue(f"expected keys from 0-9, * and #, got {raw!r}")


def _send_digits(raw: str) -> str:
    if _DIGITS.fullmatch(raw.strip()):
        return raw.strip()
    raise _BadValue(f"expected digits, *, #, A-D and w pauses, got {raw!r}")


def _gather_input(raw: str) -> frozenset[str]:
    items = frozenset(item for item in re.split(r"[\s,]+", raw.strip().lower()) if item)
    if not items or not items <= {"dtmf", "speech"}:
        raise _BadValue(f"expected dtmf, speech or 'dtmf speech', got {raw!r}")
    return items


def _speech_timeout(raw: str) -> float | str:
    text = raw.strip().lower()
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise _BadValue(f"expected a number of seconds or auto, got {raw!r}") from None
    if value < 0:
        raise _BadValue(f"expected a non-negative number of seconds, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class _Attr:
    """One attribute: the verb's field, its converter, and the warning code for a bad value
    (Twilio's attribute-specific code where its dictionary has one, else 12200)."""

    field: str
    convert: Converter
    code: int = SCHEMA_VALIDATION


_CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
_RECORDING_EVENTS = ("in-progress", "completed", "absent", "failed")
_CONFERENCE_EVENTS = ("start", "end", "join", "leave", "mute", "hold", "modify", "speaker", "announcement")
_DIAL_RECORD = (
    "do-not-record",
    "record-from-answer",
    "record-from-ringing",
    "record-from-answer-dual",
    "record-from-ringing-dual",
    "true",
    "false",
)

_SPECS: dict[str, dict[str, _Attr]] = {
    "Say": {
        "voice": _Attr("voice", _text),
        "language": _Attr("language", _text),
        "loop": _Attr("loop", _int_at_least(0), 13510),
    },
    "Play": {"loop": _Attr("loop", _int_at_least(0), 13410), "digits": _Attr("digits", _send_digits)},
    "Pause": {"length": _Attr("length", _int_at_least(0), 13910)},
    "Gather": {
        "input": _Attr("input", _gather_input),
        "action": _Attr("action", _url),
        "method": _Attr("method", _method, 13312),
        "timeout": _Attr("timeout", _int_at_least(0), 13313),
        "speechTimeout": _Attr("speech_timeout", _speech_timeout, 13327),
        "maxSpeechTime": _Attr("max_speech_time", _int_at_least(1), 13328),
        "finishOnKey": _Attr("finish_on_key", _finish_on_key, 13310),
        "numDigits": _Attr("num_digits", _int_at_least(1), 13314),
        "hints": _Attr("hints", _text),
        "language": _Attr("language", _text),
        "partialResultCallback": _Attr("partial_result_callback", _url),
        "partialResultCallbackMethod": _Attr("partial_result_callback_method", _method),
        "actionOnEmptyResult": _Attr("action_on_empty_result", _boolean, 13338),
        "profanityFilter": _Attr("profanity_filter", _boolean),
        "speechModel": _Attr("speech_model", _text),
        "enhanced": _Attr("enhanced", _boolean),
    },
    "Record": {
        "action": _Attr("action", _url),
        "method": _Attr("method", _method, 13610),
        "timeout": _Attr("timeout", _int_at_least(0), 13611),
        "finishOnKey": _Attr("finish_on_key", _finish_on_key, 13613),
        "maxLength": _Attr("max_length", _int_at_least(1), 13612),
        "playBeep": _Attr("play_beep", _boolean),
        "trim": _Attr("trim", _one_of("trim-silence", "do-not-trim")),
        "recordingStatusCallback": _Attr("recording_status_callback", _url),
        "recordingStatusCallbackMethod": _Attr("recording_status_callback_method", _method),
        "recordingStatusCallbackEvent": _Attr("recording_status_callback_event", _events(*_RECORDING_EVENTS)),
        "transcribe": _Attr("transcribe", _boolean),
        "transcribeCallback": _Attr("transcribe_callback", _url),
    },
    "Dial": {
        "action": _Attr("action", _url),
        "method": _Attr("method", _method, 13210),
        "timeout": _Attr("timeout", _int_at_least(1), 13212),
        "hangupOnStar": _Attr("hangup_on_star", _boolean, 13213),
        "timeLimit": _Attr("time_limit", _int_at_least(1), 13216),
        "callerId": _Attr("caller_id", _text, 13214),
        "record": _Attr("record", _one_of(*_DIAL_RECORD)),
        "trim": _Attr("trim", _one_of("trim-silence", "do-not-trim")),
        "recordingStatusCallback": _Attr("recording_status_callback", _url),
        "recordingStatusCallbackMethod": _Attr("recording_status_callback_method", _method),
        "recordingStatusCallbackEvent": _Attr("recording_status_callback_event", _events(*_RECORDING_EVENTS)),
        "answerOnBridge": _Attr("answer_on_bridge", _boolean),
        "ringTone": _Attr("ring_tone", _text),
        "sequential": _Attr("sequential", _boolean),
        "referUrl": _Attr("refer_url", _url),
        "referMethod": _Attr("refer_method", _method),
    },
    "Number": {
        "sendDigits": _Attr("send_digits", _send_digits),
        "url": _Attr("url", _url),
        "method": _Attr("method", _method),
        "byoc": _Attr("byoc", _text),
    },
    "Sip": {
        "username": _Attr("username", _text),
        "password": _Attr("password", _text),
        "url": _Attr("url", _url),
        "method": _Attr("method", _method),
    },
    "Client": {"url": _Attr("url", _url), "method": _Attr("method", _method)},
    "Conference": {
        "muted": _Attr("muted", _boolean, 13230),
        "beep": _Attr("beep", _one_of("true", "false", "onEnter", "onExit"), 13235),
        "startConferenceOnEnter": _Attr("start_conference_on_enter", _boolean, 13232),
        "endConferenceOnExit": _Attr("end_conference_on_exit", _boolean),
        "waitUrl": _Attr("wait_url", _text),
        "waitMethod": _Attr("wait_method", _method),
        "maxParticipants": _Attr("max_participants", _int_at_least(2)),
        "record": _Attr("record", _one_of("do-not-record", "record-from-start")),
        "trim": _Attr("trim", _one_of("trim-silence", "do-not-trim")),
        "coach": _Attr("coach", _text),
        "participantLabel": _Attr("participant_label", _text),
        "statusCallback": _Attr("status_callback", _url),
        "statusCallbackMethod": _Attr("status_callback_method", _method),
        "statusCallbackEvent": _Attr("status_callback_event", _events(*_CONFERENCE_EVENTS)),
        "recordingStatusCallback": _Attr("recording_status_callback", _url),
        "recordingStatusCallbackMethod": _Attr("recording_status_callback_method", _method),
        "recordingStatusCallbackEvent": _Attr("recording_status_callback_event", _events(*_RECORDING_EVENTS)),
        "eventCallbackUrl": _Attr("event_callback_url", _url),
        "jitterBufferSize": _Attr("jitter_buffer_size", _one_of("off", "small", "medium", "large")),
        "region": _Attr("region", _text),
    },
    "Queue": {
        "url": _Attr("url", _url),
        "method": _Attr("method", _method),
        "reservationSid": _Attr("reservation_sid", _text),
        "postWorkActivitySid": _Attr("post_work_activity_sid", _text),
    },
    "Reject": {"reason": _Attr("reason", _one_of("rejected", "busy"))},
    "Redirect": {"method": _Attr("method", _method, 13710)},
    "Enqueue": {
        "action": _Attr("action", _url),
        "method": _Attr("method", _method),
        "waitUrl": _Attr("wait_url", _url),
        "waitUrlMethod": _Attr("wait_url_method", _method),
        "workflowSid": _Attr("workflow_sid", _text),
    },
    "Refer": {"action": _Attr("action", _url), "method": _Attr("method", _method)},
    "Message": {
        "to": _Attr("to", _text),
        "from": _Attr("from_", _text),
        "action": _Attr("action", _url),
        "method": _Attr("method", _method),
        "statusCallback": _Attr("status_callback", _url),
    },
    "Hangup": {},
    "Leave": {},
}

# Per-noun call-progress callbacks, shared by Number, Sip and Client.
_NOUN_STATUS = {
    "statusCallback": _Attr("url", _url),
    "statusCallbackMethod": _Attr("method", _method),
    "statusCallbackEvent": _Attr("events", _events(*_CALL_EVENTS)),
}

# SSML elements Twilio accepts inside <Say>.
_SSML = {"break", "emphasis", "lang", "p", "phoneme", "prosody", "s", "say-as", "sub", "w"}

_UNSUPPORTED = {"Connect", "Start", "Stop", "Pay", "Prompt", "Echo", "Stream", "Siprec", "Transcription"}


class _Reader:
    """Walks one document, collecting warnings."""

    def __init__(self) -> None:
        self.warnings: list[v.TwimlWarning] = []

    def attributes(
        self, el: ET.Element, spec: Mapping[str, _Attr], extra: Mapping[str, _Attr] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Convert ``el``'s attributes: (kwargs for the verb, kwargs for the ``extra`` spec)."""
        main: dict[str, Any] = {}
        side: dict[str, Any] = {}
        for name, raw in el.attrib.items():
            attr = spec.get(name)
            target = main
            if attr is None and extra is not None and name in extra:
                attr, target = extra[name], side
            if attr is None:
                raise TwimlError(SCHEMA_VALIDATION, f"<{el.tag}> has no attribute {name!r}")
            try:
                target[attr.field] = attr.convert(raw)
            except _BadValue as exc:
                self.warnings.append(
                    v.TwimlWarning(attr.code, f"{el.tag}: invalid {name} value: {exc}", el.tag, name, raw)
                )
        return main, side

    def no_children(self, el: ET.Element) -> None:
        for child in el:
            raise TwimlError(SCHEMA_VALIDATION, f"<{child.tag}> is not allowed inside <{el.tag}>")

    def simple(self, el: ET.Element) -> dict[str, Any]:
        self.no_children(el)
        kwargs, _ = self.attributes(el, _SPECS[el.tag])
        return kwargs

    def say(self, el: ET.Element) -> v.Say:
        kwargs, _ = self.attributes(el, _SPECS["Say"])
        for child in el.iter():
            if child is not el and child.tag not in _SSML and not child.tag.startswith("amazon:"):
                raise TwimlError(SCHEMA_VALIDATION, f"<{child.tag}> is not allowed inside <Say>")
        # SSML elements (<break>, <prosody>, <emphasis>, ...) may sit inside <Say>; speak their text.
        text = " ".join(" ".join(el.itertext()).split())
        if not text:
            self.warnings.append(v.TwimlWarning(13520, "Say: Invalid text: nothing to say", "Say"))
        return v.Say(text=text, **kwargs)

    def play(self, el: ET.Element) -> v.Play:
        kwargs = self.simple(el)
        url = (el.text or "").strip()
        if not url and "digits" not in kwargs:
            raise TwimlError(SCHEMA_VALIDATION, "<Play> needs a URL or a digits attribute")
        return v.Play(url=url, **kwargs)

    def gather(self, el: ET.Element) -> v.Gather:
        kwargs, _ = self.attributes(el, _SPECS["Gather"])
        children: list[v.GatherChild] = []
        for child in el:
            if child.tag == "Say":
                children.append(self.say(child))
            elif child.tag == "Play":
                children.append(self.play(child))
            elif child.tag == "Pause":
                children.append(v.Pause(**self.simple(child)))
            else:
                raise TwimlError(SCHEMA_VALIDATION, f"<{child.tag}> is not allowed inside <Gather>")
        return v.Gather(children=tuple(children), **kwargs)

    def noun_status(self, el: ET.Element) -> tuple[dict[str, Any], v.StatusCallbacks]:
        kwargs, status = self.attributes(el, _SPECS[el.tag], _NOUN_STATUS)
        return kwargs, v.StatusCallbacks(**status)

    def dial(self, el: ET.Element) -> v.Dial:
        kwargs, _ = self.attributes(el, _SPECS["Dial"])
        nouns: list[v.DialNoun] = []
        text = (el.text or "").strip()
        if text:
            nouns.append(v.Number(number=self.phone_number(text)))
        for child in el:
            nouns.append(self.noun(child))
            if (child.tail or "").strip():
                raise TwimlError(SCHEMA_VALIDATION, "<Dial> mixes a bare number with nested nouns")
        if not nouns:
            raise TwimlError(SCHEMA_VALIDATION, "<Dial> has nothing to dial")
        if text and len(nouns) > 1:
            raise TwimlError(SCHEMA_VALIDATION, "<Dial> mixes a bare number with nested nouns")
        return v.Dial(nouns=tuple(nouns), **kwargs)

    def phone_number(self, text: str) -> str:
        if not re.fullmatch(r"\+?[0-9*#()\-. ]{1,40}", text) or not re.search(r"[0-9]", text):
            raise TwimlError(13223, f"Dial: Invalid phone number format: {text!r}")
        return text

    def noun(self, el: ET.Element) -> v.DialNoun:
        text = (el.text or "").strip()
        if el.tag == "Number":
            self.no_children(el)
            kwargs, status = self.noun_status(el)
            return v.Number(number=self.phone_number(text), status=status, **kwargs)
        if el.tag == "Sip":
            self.no_children(el)
            kwargs, status = self.noun_status(el)
            if not re.match(r"sips?:", text, re.IGNORECASE):
                raise TwimlError(SCHEMA_VALIDATION, f"<Sip> needs a sip: or sips: URI, got {text!r}")
            return v.Sip(uri=text, status=status, **kwargs)
        if el.tag == "Client":
            return self.client(el)
        if el.tag == "Conference":
            kwargs = self.simple(el)
            if not text:
                raise TwimlError(SCHEMA_VALIDATION, "<Conference> needs a room name")
            return v.Conference(name=text, **kwargs)
        if el.tag == "Queue":
            kwargs = self.simple(el)
            if not text:
                raise TwimlError(SCHEMA_VALIDATION, "<Queue> needs a queue name")
            return v.Queue(name=text, **kwargs)
        raise TwimlError(SCHEMA_VALIDATION, f"<{el.tag}> is not allowed inside <Dial>")

    def client(self, el: ET.Element) -> v.Client:
        kwargs, status = self.noun_status(el)
        identity = (el.text or "").strip()
        parameters: list[tuple[str, str]] = []
        for child in el:
            if child.tag == "Identity":
                self.no_children(child)
                identity = (child.text or "").strip()
            elif child.tag == "Parameter":
                self.no_children(child)
                unknown = set(child.attrib) - {"name", "value"}
                if unknown or "name" not in child.attrib:
                    raise TwimlError(SCHEMA_VALIDATION, "<Parameter> takes a name and a value attribute")
                parameters.append((child.attrib["name"], child.attrib.get("value", "")))
            else:
                raise TwimlError(SCHEMA_VALIDATION, f"<{child.tag}> is not allowed inside <Client>")
        if not identity:
            raise TwimlError(SCHEMA_VALIDATION, "<Client> needs an identity")
        return v.Client(identity=identity, status=status, parameters=tuple(parameters), **kwargs)

    def refer(self, el: ET.Element) -> v.Refer:
        kwargs, _ = self.attributes(el, _SPECS["Refer"])
        targets = [child for child in el if child.tag == "Sip"]
        if len(targets) != 1 or len(el) != 1:
            raise TwimlError(SCHEMA_VALIDATION, "<Refer> takes exactly one nested <Sip>")
        uri = (targets[0].text or "").strip()
        if not re.match(r"sips?:", uri, re.IGNORECASE):
            raise TwimlError(SCHEMA_VALIDATION, f"<Refer><Sip> needs a sip: URI, got {uri!r}")
        return v.Refer(target=uri, **kwargs)

    def message(self, el: ET.Element) -> v.Message:
        kwargs, _ = self.attributes(el, _SPECS["Message"])
        body = (el.text or "").strip()
        media: list[str] = []
        for child in el:
            self.no_children(child)
            if child.tag == "Body":
                body = (child.text or "").strip()
            elif child.tag == "Media":
                media.append((child.text or "").strip())
            else:
                raise TwimlError(SCHEMA_VALIDATION, f"<{child.tag}> is not allowed inside <Message>")
        return v.Message(body=body, media=tuple(media), **kwargs)

    def verb(self, el: ET.Element) -> v.Verb:
        tag = el.tag
        text = (el.text or "").strip()
        if tag == "Say":
            return self.say(el)
        if tag == "Play":
            return self.play(el)
        if tag == "Pause":
            return v.Pause(**self.simple(el))
        if tag == "Gather":
            return self.gather(el)
        if tag == "Record":
            return v.Record(**self.simple(el))
        if tag == "Dial":
            return self.dial(el)
        if tag == "Hangup":
            return v.Hangup(**self.simple(el))
        if tag == "Reject":
            return v.Reject(**self.simple(el))
        if tag == "Leave":
            return v.Leave(**self.simple(el))
        if tag == "Redirect":
            kwargs = self.simple(el)
            if not text:
                raise TwimlError(SCHEMA_VALIDATION, "<Redirect> needs a URL")
            return v.Redirect(url=text, **kwargs)
        if tag == "Enqueue":
            kwargs = self.simple(el)
            if not text:
                raise TwimlError(SCHEMA_VALIDATION, "<Enqueue> needs a queue name")
            return v.Enqueue(name=text, **kwargs)
        if tag == "Refer":
            return self.refer(el)
        if tag in ("Message", "Sms"):
            el.tag = "Message"
            return self.message(el)
        if tag in _UNSUPPORTED:
            raise TwimlError(SCHEMA_VALIDATION, f"<{tag}> is not supported by Trunkline")
        raise TwimlError(SCHEMA_VALIDATION, f"<{tag}> is not a TwiML verb")


#: Documents up to this many characters are memoised (see :func:`parse_twiml`).
MEMO_MAX_CHARS = 16384


def parse_twiml(document: str | bytes) -> v.Document:
    """Parse a TwiML ``<Response>`` into verbs, raising :class:`TwimlError` when it cannot run.

    The result is immutable, so the same text (a cached GET document answering every call) is
    parsed once: the last 256 distinct documents up to :data:`MEMO_MAX_CHARS` are memoised.
    Failures are not memoised.
    """
    if isinstance(document, bytes | str) and len(document) <= MEMO_MAX_CHARS:
        return _parse_memo(document)
    return _parse_twiml(document)


@functools.lru_cache(maxsize=256)
def _parse_memo(document: str | bytes) -> v.Document:
    return _parse_twiml(document)


def _parse_twiml(document: str | bytes) -> v.Document:
    if not (document.strip() if isinstance(document, bytes | str) else document):
        raise TwimlError(DOCUMENT_PARSE_FAILURE, "the document is empty")
    try:
        root = fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise TwimlError(DOCUMENT_PARSE_FAILURE, f"forbidden XML construct: {exc}") from None
    except ET.ParseError as exc:
        raise TwimlError(DOCUMENT_PARSE_FAILURE, f"not well-formed XML: {exc}") from None
    if root.tag != "Response":
        raise TwimlError(SCHEMA_VALIDATION, f"the root element must be <Response>, not <{root.tag}>")
    if root.attrib:
        raise TwimlError(SCHEMA_VALIDATION, f"<Response> has no attribute {next(iter(root.attrib))!r}")
    reader = _Reader()
    verbs = tuple(reader.verb(child) for child in root)
    return v.Document(verbs=verbs, warnings=tuple(reader.warnings))
