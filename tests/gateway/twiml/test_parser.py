"""TwiML parser: documents built with the twilio library's own TwiML builder, and broken ones."""

from __future__ import annotations

import pytest
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.parser import TwimlError, parse_twiml


def test_defaults_match_twilio() -> None:
    response = VoiceResponse()
    response.append(Gather())
    response.record()
    response.pause()
    response.say("hi")
    doc = parse_twiml(str(response))
    gather, record, pause, say = doc.verbs
    assert gather == v.Gather()
    assert (gather.timeout, gather.finish_on_key, gather.method, gather.input) == (5, "#", "POST", {"dtmf"})
    assert gather.num_digits is None and gather.action is None
    assert record == v.Record()
    assert (record.max_length, record.timeout, record.finish_on_key, record.play_beep) == (
        3600,
        5,
        "1234567890*#",
        True,
    )
    assert pause == v.Pause(length=1)
    assert say == v.Say(text="hi", voice="man", language="en-US", loop=1)
    assert doc.warnings == ()


def test_every_gather_attribute() -> None:
    response = VoiceResponse()
    gather = Gather(
        input="dtmf speech",
        action="https://app.example/gathered",
        method="GET",
        timeout=3,
        speech_timeout="auto",
        finish_on_key="",
        num_digits=4,
        hints="sales, support",
        language="fr-FR",
        partial_result_callback="https://app.example/partial",
        action_on_empty_result=True,
    )
    gather.say("Entrez votre code", voice="alice", language="fr-FR", loop=2)
    gather.play("https://app.example/a.wav", loop=0)
    gather.pause(length=2)
    response.append(gather)
    (parsed,) = parse_twiml(str(response)).verbs
    assert isinstance(parsed, v.Gather)
    assert parsed.input == {"dtmf", "speech"}
    assert parsed.action == "https://app.example/gathered"
    assert parsed.method == "GET"
    assert parsed.timeout == 3
    assert parsed.speech_timeout == "auto"
    assert parsed.finish_on_key == ""
    assert parsed.num_digits == 4
    assert parsed.hints == "sales, support"
    assert parsed.language == "fr-FR"
    assert parsed.partial_result_callback == "https://app.example/partial"
    assert parsed.action_on_empty_result is True
    assert parsed.children == (
        v.Say(text="Entrez votre code", voice="alice", language="fr-FR", loop=2),
        v.Play(url="https://app.example/a.wav", loop=0),
        v.Pause(length=2),
    )


def test_dial_with_parallel_nouns_and_attributes() -> None:
    response = VoiceResponse()
    dial = Dial(
        action="/after",
        timeout=20,
        caller_id="+15550001111",
        record="record-from-answer-dual",
        hangup_on_star=True,
        time_limit=600,
        answer_on_bridge=True,
        ring_tone="uk",
    )
    dial.number(
        "+15551230000",
        send_digits="ww1234",
        url="/whisper",
        status_callback="/ns",
        status_callback_event="initiated ringing answered completed",
    )
    dial.sip("sip:alice@127.0.0.1:5080?X-Customer=42", username="u", password="p")
    dial.client("bob")
    response.append(dial)
    (parsed,) = parse_twiml(str(response)).verbs
    assert isinstance(parsed, v.Dial)
    assert (parsed.action, parsed.timeout, parsed.caller_id) == ("/after", 20, "+15550001111")
    assert parsed.record == "record-from-answer-dual"
    assert parsed.hangup_on_star and parsed.answer_on_bridge
    assert parsed.time_limit == 600 and parsed.ring_tone == "uk"
    number, sip, client = parsed.nouns
    assert number == v.Number(
        number="+15551230000",
        send_digits="ww1234",
        url="/whisper",
        status=v.StatusCallbacks(url="/ns", events=("initiated", "ringing", "answered", "completed")),
    )
    assert sip == v.Sip(uri="sip:alice@127.0.0.1:5080?X-Customer=42", username="u", password="p")
    assert client == v.Client(identity="bob")


def test_dial_bare_number_and_conference() -> None:
    response = VoiceResponse()
    response.dial("+15551234567")
    dial = Dial()
    dial.conference(
        "Room 1234",
        muted=True,
        beep="onEnter",
        start_conference_on_enter=False,
        end_conference_on_exit=True,
        wait_url="",
        max_participants=10,
        status_callback="/conf",
        status_callback_event="start end join leave",
    )
    response.append(dial)
    first, second = parse_twiml(str(response)).verbs
    assert isinstance(first, v.Dial) and first.nouns == (v.Number(number="+15551234567"),)
    assert isinstance(second, v.Dial)
    (conference,) = second.nouns
    assert isinstance(conference, v.Conference)
    assert conference.name == "Room 1234" and conference.muted and conference.beep == "onEnter"
    assert not conference.start_conference_on_enter and conference.end_conference_on_exit
    assert conference.wait_url == "" and conference.max_participants == 10
    assert conference.status_callback_event == ("start", "end", "join", "leave")


def test_simple_verbs() -> None:
    response = VoiceResponse()
    response.play(digits="ww12#")
    response.redirect("/next", method="GET")
    response.enqueue("support", wait_url="/wait")
    response.leave()
    response.hangup()
    response.reject(reason="busy")
    verbs = parse_twiml(str(response)).verbs
    assert verbs == (
        v.Play(url="", digits="ww12#"),
        v.Redirect(url="/next", method="GET"),
        v.Enqueue(name="support", wait_url="/wait"),
        v.Leave(),
        v.Hangup(),
        v.Reject(reason="busy"),
    )
    assert verbs[-1].sip_status == 486  # type: ignore[union-attr]
    assert v.Reject().sip_status == 603


def test_refer_and_message() -> None:
    doc = parse_twiml(
        '<Response><Refer action="/r"><Sip>sip:agent@pbx.example</Sip></Refer>'
        '<Message to="+15550001111">Thanks!</Message></Response>'
    )
    assert doc.verbs == (
        v.Refer(target="sip:agent@pbx.example", action="/r"),
        v.Message(body="Thanks!", to="+15550001111"),
    )
    reply = MessagingResponse()
    reply.message("Привет")
    assert parse_twiml(str(reply)).verbs == (v.Message(body="Привет"),)


def test_ssml_inside_say_is_spoken_as_text() -> None:
    response = VoiceResponse()
    say = response.say("Hello", voice="Polly.Joanna")
    say.break_(time="1s")
    say.prosody("slowly", rate="slow")
    (parsed,) = parse_twiml(str(response)).verbs
    assert parsed == v.Say(text="Hello slowly", voice="Polly.Joanna")


@pytest.mark.parametrize(
    ("attribute", "value", "code"),
    [
        ("timeout", "soon", 13313),
        ("numDigits", "0", 13314),
        ("finishOnKey", "x", 13310),
        ("method", "PUT", 13312),
        ("speechTimeout", "-1", 13327),
        ("actionOnEmptyResult", "maybe", 13338),
    ],
)
def test_bad_attribute_values_warn_with_twilio_codes_and_keep_defaults(
    attribute: str, value: str, code: int
) -> None:
    doc = parse_twiml(f'<Response><Gather {attribute}="{value}"/></Response>')
    assert doc.verbs == (v.Gather(),)
    (warning,) = doc.warnings
    assert (warning.code, warning.element, warning.attribute, warning.value) == (
        code,
        "Gather",
        attribute,
        value,
    )


def test_bad_loop_and_length_warn() -> None:
    doc = parse_twiml('<Response><Say loop="-1">x</Say><Pause length="a"/><Play loop="z">u</Play></Response>')
    assert [w.code for w in doc.warnings] == [13510, 13910, 13410]
    assert doc.verbs == (v.Say(text="x"), v.Pause(), v.Play(url="u"))


@pytest.mark.parametrize(
    ("document", "code", "fragment"),
    [
        ("", 12100, "empty"),
        ("<Response><Say>unclosed</Response>", 12100, "well-formed"),
        ("not xml at all", 12100, "well-formed"),
        (
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><Response><Say>&a;</Say></Response>',
            12100,
            "forbidden",
        ),
        ("<Reply><Say>hi</Say></Reply>", 12200, "root element"),
        ("<Response><Dance/></Response>", 12200, "<Dance> is not a TwiML verb"),
        ('<Response><Say colour="red">hi</Say></Response>', 12200, "no attribute 'colour'"),
        (
            "<Response><Gather><Dial>+1555</Dial></Gather></Response>",
            12200,
            "<Dial> is not allowed inside <Gather>",
        ),
        ("<Response><Say><Hangup/></Say></Response>", 12200, "<Hangup> is not allowed inside <Say>"),
        ("<Response><Dial></Dial></Response>", 12200, "nothing to dial"),
        ("<Response><Dial><Sip>alice@example.com</Sip></Dial></Response>", 12200, "sip: or sips: URI"),
        ("<Response><Dial>call me maybe</Dial></Response>", 13223, "Invalid phone number"),
        ("<Response><Redirect/></Response>", 12200, "needs a URL"),
        ("<Response><Play/></Response>", 12200, "needs a URL"),
        ("<Response><Connect><Stream url='wss://x'/></Connect></Response>", 12200, "not supported"),
    ],
)
def test_fatal_documents(document: str, code: int, fragment: str) -> None:
    with pytest.raises(TwimlError) as info:
        parse_twiml(document)
    assert info.value.code == code
    assert fragment in info.value.message


def test_billion_laughs_is_refused_without_expansion() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        "<Response><Say>&lol3;</Say></Response>"
    )
    with pytest.raises(TwimlError) as info:
        parse_twiml(bomb)
    assert info.value.code == 12100
