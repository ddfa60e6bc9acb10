"""Tests for trunkline.gateway.sip.sdp (RFC 3264 offer/answer over the RFC 4566 model)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest

from trunkline.gateway.sip.sdp import (
    G722,
    PCMA,
    PCMU,
    TELEPHONE_EVENT_8000,
    Connection,
    Direction,
    LocalMedia,
    RtcpAttribute,
    RtpFormat,
    SdpError,
    SessionDescription,
    build_offer,
    bump_version,
    make_hold_offer,
    make_resume_offer,
    negotiate_answer,
    parse_sdp,
    process_answer,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "sdp"
LOCAL = LocalMedia(address="203.0.113.5", rtp_port=20000, session_id=777)


def load(name: str) -> SessionDescription:
    return parse_sdp((FIXTURES / name).read_bytes())


def test_sipp_pcmu_offer() -> None:
    answer, neg = negotiate_answer(load("sipp_pcmu_offer.sdp"), LOCAL)
    assert answer.origin.sess_id == "777" and answer.origin.address == "203.0.113.5"
    assert answer.connection == Connection("203.0.113.5")
    (audio,) = answer.media
    assert (audio.port, audio.proto, audio.formats, audio.direction) == (20000, "RTP/AVP", ("0",), "sendrecv")
    assert audio.rtpmap == {"0": "PCMU/8000"}
    assert audio.ptime == 20
    assert (neg.remote_address, neg.remote_port) == ("127.0.0.1", 6000)
    assert (neg.remote_rtcp_address, neg.remote_rtcp_port) == ("127.0.0.1", 6001)
    assert neg.codec == PCMU and neg.payload_type == 0
    assert neg.telephone_event_payload_type is None
    assert (neg.direction, neg.on_hold, neg.ptime, neg.local_port) == ("sendrecv", False, 20, 20000)
    assert neg.sends and neg.receives


def test_linphone_offer_uses_offerer_order_and_payload_types() -> None:
    answer, neg = negotiate_answer(load("linphone_opus_offer.sdp"), LOCAL)
    (audio,) = answer.media
    # opus is first in the offer (PT 96), although PCMU comes first in our preference
    assert audio.formats == ("96", "101")
    assert audio.rtpmap == {"96": "opus/48000/2", "101": "telephone-event/48000"}
    assert audio.fmtp == {"96": "useinbandfec=1", "101": "0-16"}
    assert neg.codec == RtpFormat(96, "opus", 48000, 2, {"useinbandfec": "1"})
    # telephone-event at the codec's clock rate is chosen among 48000/16000/8000
    assert neg.telephone_event is not None and neg.telephone_event.clock_rate == 48000
    assert neg.telephone_event_payload_type == 101
    assert (neg.remote_rtcp_address, neg.remote_rtcp_port) == ("192.168.1.20", 7079)
    assert audio.attributes == ()  # ICE attributes are not echoed


def test_answer_all_matching_codecs_in_offerer_order() -> None:
    local = replace(LOCAL, answer_single_codec=False)
    answer, neg = negotiate_answer(load("linphone_opus_offer.sdp"), local)
    assert answer.media[0].formats == ("96", "0", "8", "101")  # speex and G729 are dropped
    assert [c.encoding_name for c in neg.codecs] == ["opus", "PCMU", "PCMA"]


def test_local_preference_without_opus_picks_telephone_event_8000() -> None:
    local = replace(LOCAL, codecs=(PCMA, PCMU, TELEPHONE_EVENT_8000))
    answer, neg = negotiate_answer(load("linphone_opus_offer.sdp"), local)
    assert answer.media[0].formats == ("0", "100")  # offerer's order: PCMU before PCMA
    assert neg.telephone_event_payload_type == 100


def test_hold_offer_answered_recvonly() -> None:
    answer, neg = negotiate_answer(load("hold_offer.sdp"), LOCAL)
    assert answer.media[0].direction == "recvonly"
    assert answer.media[0].formats == ("8", "101")
    assert (neg.direction, neg.on_hold) == ("recvonly", True)
    assert not neg.sends and neg.receives
    assert (neg.remote_address, neg.remote_rtcp_port) == ("10.0.0.5", 4001)


def test_rfc2543_hold_answered_without_sending() -> None:
    answer, neg = negotiate_answer(load("hold_2543_offer.sdp"), LOCAL)
    assert answer.media[0].direction == "recvonly"
    assert neg.on_hold and neg.remote_address == "0.0.0.0"
    assert neg.telephone_event_payload_type == 101


@pytest.mark.parametrize(
    ("offered", "local", "answered", "on_hold"),
    [
        ("sendrecv", "sendrecv", "sendrecv", False),
        ("sendonly", "sendrecv", "recvonly", True),
        ("recvonly", "sendrecv", "sendonly", False),
        ("inactive", "sendrecv", "inactive", True),
        ("sendrecv", "sendonly", "sendonly", False),
        ("sendrecv", "inactive", "inactive", False),
        ("sendonly", "sendonly", "inactive", True),
    ],
)
def test_direction_table(offered: str, local: str, answered: str, on_hold: bool) -> None:
    offer = parse_sdp(
        f"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        f"m=audio 4000 RTP/AVP 0\r\na={offered}\r\n"
    )
    answer, neg = negotiate_answer(offer, replace(LOCAL, direction=cast(Direction, local)))
    assert answer.media[0].direction == answered == neg.direction
    assert neg.on_hold is on_hold


def test_ipv6_offer() -> None:
    local = LocalMedia(address="2001:db8::5", rtp_port=30000, session_id=1)
    answer, neg = negotiate_answer(load("ipv6_offer.sdp"), local)
    assert answer.connection == Connection("2001:db8::5", "IP6")
    assert answer.origin.addrtype == "IP6"
    assert answer.media[0].formats == ("8", "101")
    assert (neg.remote_address, neg.remote_port) == ("2001:db8::1", 49170)
    assert (neg.remote_rtcp_address, neg.remote_rtcp_port) == ("2001:db8::2", 53020)
    assert neg.ptime == 30 and answer.media[0].ptime == 30  # the offerer's ptime is honoured


def test_ptime_clamped_to_maxptime() -> None:
    offer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 8\r\na=maxptime:10\r\n"
    )
    _, neg = negotiate_answer(offer, LOCAL)
    assert neg.ptime == 10


def test_video_rejected_audio_accepted_in_order() -> None:
    answer, neg = negotiate_answer(load("video_audio_offer.sdp"), LOCAL)
    video, audio = answer.media
    assert (video.media, video.port, video.formats) == ("video", 0, ("99", "34"))
    assert (audio.media, audio.port) == ("audio", 20000)
    assert audio.formats == ("9", "101")  # G722 is first in the offer
    assert neg.media_index == 1 and neg.codec.encoding_name == "G722"
    assert neg.codec.sample_rate == 16000
    assert (neg.remote_address, neg.remote_port) == ("198.51.100.10", 49232)


def test_g722_offer_skips_comfort_noise() -> None:
    answer, neg = negotiate_answer(load("g722_offer.sdp"), LOCAL)
    assert answer.media[0].formats == ("9", "102")
    assert answer.media[0].rtpmap["9"] == "G722/8000"
    assert neg.codec == G722 and neg.telephone_event_payload_type == 102


def test_only_first_audio_stream_is_used_and_port_zero_is_rejected() -> None:
    offer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 0 RTP/AVP 0\r\nm=audio 4000 RTP/AVP 8\r\nm=audio 4002 RTP/AVP 0\r\n"
    )
    answer, neg = negotiate_answer(offer, LOCAL)
    assert [m.port for m in answer.media] == [0, 20000, 0]
    assert neg.media_index == 1 and neg.codec == PCMA


def test_no_audio_is_488_media_type_not_available() -> None:
    offer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=video 5000 RTP/AVP 34\r\n"
    )
    with pytest.raises(SdpError) as info:
        negotiate_answer(offer, LOCAL)
    assert info.value.status_code == 488
    assert info.value.warning == '304 trunkline "Media type not available"'


def test_no_common_codec_is_488_incompatible_format() -> None:
    offer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 5000 RTP/AVP 18 97 101\r\na=rtpmap:97 speex/16000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    with pytest.raises(SdpError) as info:
        negotiate_answer(offer, LOCAL)
    assert info.value.status_code == 488
    assert info.value.warning == '305 trunkline "Incompatible media format"'


def test_srtp_only_offer_is_488_incompatible_transport() -> None:
    with pytest.raises(SdpError) as info:
        negotiate_answer(load("webrtc_offer.sdp"), LOCAL)
    assert info.value.status_code == 488
    assert info.value.warning is not None and info.value.warning.startswith("302 trunkline")


def test_missing_connection_is_400() -> None:
    offer = parse_sdp("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n")
    with pytest.raises(SdpError) as info:
        negotiate_answer(offer, LOCAL)
    assert info.value.status_code == 400


def test_build_offer_and_process_answer() -> None:
    local = LocalMedia(address="192.0.2.10", rtp_port=10000, session_id=99, rtcp_port=10005)
    offer = build_offer(local)
    audio = offer.media[0]
    assert audio.formats == ("0", "8", "111", "9", "101", "102")
    assert audio.rtpmap["111"] == "opus/48000/2" and audio.fmtp["101"] == "0-16"
    assert audio.rtcp == RtcpAttribute(10005)
    assert (offer.origin.sess_id, offer.origin.sess_version) == ("99", 1)
    assert parse_sdp(offer.serialize()) == offer

    # the far end answers with opus and both telephone-events at the same payload types
    remote = LocalMedia(address="198.51.100.7", rtp_port=40000, session_id=5, answer_single_codec=False)
    answer, remote_neg = negotiate_answer(parse_sdp(offer.serialize()), remote)
    assert remote_neg.codec.encoding_name == "PCMU"  # the offerer's (our) order
    assert (remote_neg.remote_rtcp_port, remote_neg.remote_address) == (10005, "192.0.2.10")
    neg = process_answer(offer, parse_sdp(answer.serialize()))
    assert (neg.remote_address, neg.remote_port, neg.remote_rtcp_port) == ("198.51.100.7", 40000, 40001)
    assert neg.codec == PCMU
    assert [c.encoding_name for c in neg.codecs] == ["PCMU", "PCMA", "opus", "G722"]
    assert neg.telephone_event_payload_type == 101
    assert (neg.direction, neg.on_hold, neg.local_port) == ("sendrecv", False, 10000)


def test_process_answer_on_hold_and_errors() -> None:
    offer = build_offer(LOCAL)
    held = parse_sdp(
        "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"
    )
    neg = process_answer(offer, held)
    assert (neg.codec, neg.direction, neg.on_hold) == (PCMA, "recvonly", True)

    rejected = replace(held, media=(replace(held.media[0], port=0),))
    with pytest.raises(SdpError) as info:
        process_answer(offer, rejected)
    assert (info.value.status_code, info.value.warning) == (488, '304 trunkline "Media type not available"')

    alien = replace(held, media=(replace(held.media[0], formats=("18",), rtpmap={}),))
    with pytest.raises(SdpError) as info:
        process_answer(offer, alien)
    assert info.value.warning == '305 trunkline "Incompatible media format"'

    with pytest.raises(SdpError, match="m= lines"):
        process_answer(offer, replace(held, media=held.media * 2))


def test_versions_for_reoffers() -> None:
    first = build_offer(LOCAL)
    same = build_offer(LOCAL, previous=first)
    assert same == first  # unchanged session: identical SDP, same version (RFC 3264 §8)
    moved = build_offer(replace(LOCAL, rtp_port=20002), previous=first)
    assert moved.origin == replace(first.origin, sess_version=2)
    assert moved.media[0].port == 20002
    assert bump_version(moved).origin.sess_version == 3

    hold = make_hold_offer(moved)
    assert hold.origin.sess_version == 3
    assert [m.direction for m in hold.media] == ["sendonly"]
    assert b"a=sendonly\r\n" in hold.serialize()
    # the answerer sees a hold
    _, remote_neg = negotiate_answer(parse_sdp(hold.serialize()), replace(LOCAL, address="192.0.2.99"))
    assert remote_neg.on_hold and remote_neg.direction == "recvonly"

    resumed = make_resume_offer(hold)
    assert resumed.origin.sess_version == 4 and resumed.media[0].direction == "sendrecv"


def test_hold_of_recvonly_stream_becomes_inactive() -> None:
    offer = build_offer(replace(LOCAL, direction="recvonly"))
    hold = make_hold_offer(offer)
    assert hold.media[0].direction == "inactive"
    assert make_resume_offer(hold).media[0].direction == "recvonly"


def test_answer_version_follows_previous_answer() -> None:
    offer = load("sipp_pcmu_offer.sdp")
    first, _ = negotiate_answer(offer, LOCAL)
    again, _ = negotiate_answer(offer, LOCAL, previous=first)
    assert again == first
    held, _ = negotiate_answer(load("hold_offer.sdp"), LOCAL, previous=first)
    assert held.origin == replace(first.origin, sess_version=first.origin.sess_version + 1)


@pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None, reason="pjsua2 is not installed")
def test_against_pjsua2() -> None:
    """A real pjsua2 UA calls us (offer, then hold re-offer) and answers our offer."""
    script = Path(__file__).with_name("pjsua_sdp_peer.py")
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=90, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # UAS: pjsua2 offers speex first; we pick PCMU (first shared codec in its order)
    assert result["initial_offer_formats"][:3] == ["96", "97", "98"]
    ours = result["initial_ours"]
    assert (ours["codec"], ours["pt"], ours["direction"], ours["on_hold"]) == ("PCMU", 0, "sendrecv", False)
    assert result["pj_state_confirmed"] is True
    # pjsua2 agrees on codec, payload type and telephone-event payload type, and sends to our port
    assert result["pj_codec"] == ["PCMU", 8000, 0, ours["te_pt"]]
    assert result["pj_remote_rtp"] == f"127.0.0.1:{result['our_rtp_port']}"
    # hold re-INVITE: sendonly offer, we answer recvonly, version bumped, pjsua2 sees local hold
    hold = result["hold_ours"]
    assert result["hold_offer_direction"] == "sendonly"
    assert (hold["direction"], hold["on_hold"], hold["version"]) == ("recvonly", True, 2)
    assert result["pj_local_hold"] is True
    # UAC: we offer PCMA first, pjsua2 answers, process_answer agrees with pjsua2's stream
    uac = result["uac"]
    assert uac["ours"] == ["PCMA", 8, 101, "sendrecv"]
    assert uac["pj"][:2] == ["PCMA", 8]
    assert uac["pj"][2] == f"127.0.0.1:{uac['our_rtp_port']}"
    assert uac["remote"][0] == "127.0.0.1" and uac["remote"][2] == uac["remote"][1] + 1
