"""SDP for Trunkline: the offer/answer model (RFC 3264) for one audio stream per session.

This is the public SDP module: it re-exports the RFC 4566 model, parser and serializer
from ``sdp_syntax`` (``parse_sdp``, ``SessionDescription``, ``MediaDescription``,
``RtpFormat``, ``SdpError`` ...) beside the negotiation functions.

Sans-I/O and pure: ``build_offer`` makes our offer from a ``LocalMedia`` description,
``negotiate_answer`` answers a remote offer (UAS side), ``process_answer`` reads the
remote answer to our offer (UAC side), and ``make_hold_offer`` / ``make_resume_offer``
build re-offers.  Every function that produces SDP takes ``previous`` (the last SDP we
sent in this session) so the ``o=`` line follows RFC 3264 §8.
"""

from __future__ import annotations

import functools
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from trunkline.gateway.sip.sdp_syntax import (
    DEFAULT_CODECS,
    DIRECTIONS,
    G722,
    OPUS,
    PCMA,
    PCMU,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT_8000,
    TELEPHONE_EVENT_48000,
    Attribute,
    Bandwidth,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtcpAttribute,
    RtpFormat,
    SdpError,
    SessionDescription,
    Timing,
    parse_fmtp,
    parse_sdp,
)

__all__ = [
    "DEFAULT_CODECS",
    "DIRECTIONS",
    "G722",
    "OPUS",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT_8000",
    "TELEPHONE_EVENT_48000",
    "WARN_AGENT",
    "Attribute",
    "Bandwidth",
    "Connection",
    "Direction",
    "LocalMedia",
    "MediaDescription",
    "NegotiatedMedia",
    "Origin",
    "RtcpAttribute",
    "RtpFormat",
    "SdpError",
    "SessionDescription",
    "Timing",
    "build_offer",
    "bump_version",
    "make_hold_offer",
    "make_resume_offer",
    "negotiate_answer",
    "parse_fmtp",
    "parse_sdp",
    "process_answer",
]

WARN_AGENT: Final = "trunkline"


def _warning(code: int, text: str) -> str:
    # RFC 3261 §20.43: warning-value = warn-code SP warn-agent SP warn-text
    return f'{code} {WARN_AGENT} "{text}"'


def _new_session_id() -> int:
    return secrets.randbits(62)


@functools.lru_cache(maxsize=256)
def _addrtype(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        return "IP4"  # a host name: RFC 4566 allows an FQDN with IP4


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """What we can do for one call leg: address, RTP port, codecs in preference order.

    ``session_id`` is the ``o=`` sess-id; keep the same ``LocalMedia`` (or id) for every
    SDP of one dialog.  ``protos`` lists the transport protocols we accept; the first is
    the one we offer.
    """

    address: str
    rtp_port: int
    codecs: tuple[RtpFormat, ...] = DEFAULT_CODECS
    ptime: int = 20
    direction: Direction = "sendrecv"
    rtcp_port: int | None = None
    session_id: int = field(default_factory=_new_session_id)
    username: str = "trunkline"
    session_name: str = "Trunkline"
    protos: tuple[str, ...] = ("RTP/AVP",)
    answer_single_codec: bool = True


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The outcome of one offer/answer exchange for the audio stream, seen from us."""

    remote_address: str
    remote_port: int
    remote_rtcp_address: str
    remote_rtcp_port: int
    codec: RtpFormat
    telephone_event: RtpFormat | None
    ptime: int
    direction: Direction
    on_hold: bool
    local_port: int
    media_index: int = 0
    codecs: tuple[RtpFormat, ...] = ()

    @property
    def payload_type(self) -> int:
        """RTP payload type of the chosen codec."""
        return self.codec.payload_type

    @property
    def telephone_event_payload_type(self) -> int | None:
        """RTP payload type for RFC 4733 events, or None when not negotiated."""
        return self.telephone_event.payload_type if self.telephone_event is not None else None

    @property
    def sends(self) -> bool:
        """Whether we may send media."""
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        """Whether we should expect media."""
        return self.direction in ("sendrecv", "recvonly")


def _direction(send: bool, recv: bool) -> Direction:
    if send and recv:
        return "sendrecv"
    if send:
        return "sendonly"
    return "recvonly" if recv else "inactive"


def _can_send(direction: str) -> bool:
    return direction in ("sendrecv", "sendonly")


def _can_recv(direction: str) -> bool:
    return direction in ("sendrecv", "recvonly")


def bump_version(sdp: SessionDescription) -> SessionDescription:
    """Same SDP with the ``o=`` sess-version incremented (RFC 3264 §8)."""
    return replace(sdp, origin=replace(sdp.origin, sess_version=sdp.origin.sess_version + 1))


def _versioned(new: SessionDescription, previous: SessionDescription | None) -> SessionDescription:
    # RFC 3264 §8: the o= line of a new SDP MUST be identical to the previous one except that
    # the version increments by one; if nothing changed, the SDP MUST be identical.
    if previous is None:
        return new
    candidate = replace(new, origin=previous.origin)
    return previous if candidate == previous else bump_version(candidate)


def _format_maps(formats: list[RtpFormat]) -> tuple[dict[str, str], dict[str, str]]:
    rtpmap = {str(f.payload_type): f.rtpmap for f in formats}
    fmtp = {str(f.payload_type): v for f in formats if (v := f.fmtp_value) is not None}
    return rtpmap, fmtp


def _session(local: LocalMedia, media: tuple[MediaDescription, ...]) -> SessionDescription:
    addrtype = _addrtype(local.address)
    return SessionDescription(
        origin=Origin(local.username, str(local.session_id), 1, "IN", addrtype, local.address),
        session_name=local.session_name,
        connection=Connection(local.address, addrtype),
        timings=(Timing(0, 0),),
        media=media,
    )


def _rtcp(local: LocalMedia) -> RtcpAttribute | None:
    if local.rtcp_port is None or local.rtcp_port == local.rtp_port + 1:
        return None
    return RtcpAttribute(local.rtcp_port)


def build_offer(local: LocalMedia, *, previous: SessionDescription | None = None) -> SessionDescription:
    """An offer with one audio stream listing ``local.codecs`` in preference order (RFC 3264 §5)."""
    codecs = list(local.codecs)
    rtpmap, fmtp = _format_maps(codecs)
    audio = MediaDescription(
        media="audio",
        port=local.rtp_port,
        proto=local.protos[0],
        formats=tuple(str(c.payload_type) for c in codecs),
        rtpmap=rtpmap,
        fmtp=fmtp,
        direction=local.direction,
        ptime=local.ptime,
        rtcp=_rtcp(local),
    )
    return _versioned(_session(local, (audio,)), previous)


def _rejected(m: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream keeps its m= line with port zero
    return MediaDescription(media=m.media, port=0, proto=m.proto, formats=m.formats or ("0",))


def _remote_endpoints(
    sdp: SessionDescription, m: MediaDescription, index: int
) -> tuple[Connection, str, int]:
    conn = sdp.connection_for(m)
    if conn is None:
        raise SdpError(f"no c= line for media stream {index} (RFC 4566 §5.7)")
    if m.rtcp is not None:
        return conn, m.rtcp.address or conn.address, m.rtcp.port
    # RFC 3550 §11: RTCP uses the next higher (odd) port by default
    return conn, conn.address, m.port + 1


def _pick_telephone_event(offered: list[RtpFormat], clock_rate: int) -> RtpFormat | None:
    for te in offered:
        if te.clock_rate == clock_rate:
            return te
    return offered[0] if offered else None


def negotiate_answer(
    offer: SessionDescription,
    local: LocalMedia,
    *,
    previous: SessionDescription | None = None,
) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer a remote offer (RFC 3264 §6) and say what was agreed.

    The first usable audio stream is accepted; every other stream is rejected with port 0.
    Codecs are chosen in the offerer's order with the offerer's payload type numbers.
    Raises ``SdpError`` with status 488 and a ``Warning`` value when no audio can be used.
    """
    answer_media: list[MediaDescription] = []
    negotiated: NegotiatedMedia | None = None
    saw_audio = saw_proto = False
    for index, m in enumerate(offer.media):
        if negotiated is None and m.media == "audio" and m.port != 0:
            saw_audio = True
            if m.proto in local.protos:
                saw_proto = True
                result = _answer_stream(offer, index, m, local)
                if result is not None:
                    answer_m, negotiated = result
                    answer_media.append(answer_m)
                    continue
        answer_media.append(_rejected(m))
    if negotiated is None:
        if not saw_audio:
            raise SdpError(
                "offer has no audio stream",
                status_code=488,
                warning=_warning(304, "Media type not available"),
            )
        if not saw_proto:
            raise SdpError(
                "no audio stream uses a supported transport",
                status_code=488,
                warning=_warning(302, "Incompatible transport protocol"),
            )
        raise SdpError(
            "no common audio codec", status_code=488, warning=_warning(305, "Incompatible media format")
        )
    answer = _session(local, tuple(answer_media))
    return _versioned(answer, previous), negotiated


def _split_codecs(codecs: tuple[RtpFormat, ...]) -> tuple[tuple[RtpFormat, ...], tuple[RtpFormat, ...]]:
    """Our audio codecs and our telephone-event formats, each in preference order (remembered
    per codec tuple object: every call of a node offers the same configured tuple)."""
    entry = _SPLIT.get(id(codecs))
    if entry is not None and entry[0] is codecs:
        return entry[1], entry[2]
    audio = tuple(c for c in codecs if not c.is_telephone_event)
    events = tuple(c for c in codecs if c.is_telephone_event)
    if len(_SPLIT) >= 64:
        _SPLIT.clear()
    _SPLIT[id(codecs)] = (codecs, audio, events)  # holding ``codecs`` keeps its id unique
    return audio, events


_SPLIT: dict[int, tuple[tuple[RtpFormat, ...], tuple[RtpFormat, ...], tuple[RtpFormat, ...]]] = {}


def _with_fmtp(fmt: RtpFormat, fmtp: Mapping[str, str]) -> RtpFormat:
    """``fmt`` with a copy of ``fmtp`` (what ``dataclasses.replace`` builds, for less)."""
    return RtpFormat(fmt.payload_type, fmt.encoding_name, fmt.clock_rate, fmt.channels, dict(fmtp))


def _answer_stream(
    offer: SessionDescription, index: int, m: MediaDescription, local: LocalMedia
) -> tuple[MediaDescription, NegotiatedMedia] | None:
    conn, rtcp_address, rtcp_port = _remote_endpoints(offer, m, index)
    offered = m.rtp_formats()
    # (offered format, the same with our fmtp): the negotiated codec keeps the remote's fmtp
    # (how it wants to receive), the answer carries ours with the offerer's payload type.
    audio_codecs, event_codecs = _split_codecs(local.codecs)
    offered_events = [fmt.is_telephone_event for fmt in offered]
    chosen: list[tuple[RtpFormat, RtpFormat]] = []
    for fmt, is_event in zip(offered, offered_events, strict=True):
        if is_event:
            continue
        ours = next((c for c in audio_codecs if c.matches(fmt)), None)
        if ours is not None:
            chosen.append((fmt, _with_fmtp(fmt, ours.fmtp)))
    if not chosen:
        return None
    events: list[tuple[RtpFormat, RtpFormat]] = []
    for fmt, is_event in zip(offered, offered_events, strict=True):
        if not is_event:
            continue
        ours = next((c for c in event_codecs if c.clock_rate == fmt.clock_rate), None)
        if ours is not None:
            events.append((fmt, _with_fmtp(fmt, ours.fmtp)))
    event = _pick_telephone_event([remote for remote, _ in events], chosen[0][0].clock_rate)
    listed = chosen[:1] if local.answer_single_codec else chosen
    answer_formats = [ours for _, ours in listed]
    answer_formats += [ours for remote, ours in events if remote is event]
    rtpmap, fmtp = _format_maps(answer_formats)
    for fmt in answer_formats:  # keep the offerer's spelling of the encoding name
        if str(fmt.payload_type) in m.rtpmap:
            rtpmap[str(fmt.payload_type)] = m.rtpmap[str(fmt.payload_type)]

    # RFC 3264 §6.1: sendonly is answered recvonly, recvonly sendonly, inactive inactive;
    # RFC 3264 §8.4: c=0.0.0.0 (RFC 2543 hold) means the offerer does not want media.
    held_by_address = conn.is_null
    we_send = _can_recv(m.direction) and not held_by_address and _can_send(local.direction)
    we_recv = _can_send(m.direction) and _can_recv(local.direction)
    direction = _direction(we_send, we_recv)
    ptime = m.ptime or local.ptime
    if m.maxptime is not None and ptime > m.maxptime:
        ptime = m.maxptime
    answer_m = MediaDescription(
        media="audio",
        port=local.rtp_port,
        proto=m.proto,
        formats=tuple(str(f.payload_type) for f in answer_formats),
        rtpmap=rtpmap,
        fmtp=fmtp,
        direction=direction,
        ptime=ptime,
        rtcp=_rtcp(local),
    )
    negotiated = NegotiatedMedia(
        remote_address=conn.address,
        remote_port=m.port,
        remote_rtcp_address=rtcp_address,
        remote_rtcp_port=rtcp_port,
        codec=chosen[0][0],
        telephone_event=event,
        ptime=ptime,
        direction=direction,
        on_hold=held_by_address or not _can_recv(m.direction),
        local_port=local.rtp_port,
        media_index=index,
        codecs=tuple(remote for remote, _ in listed),
    )
    return answer_m, negotiated


def process_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """Read the answer to our ``offer`` (UAC side, RFC 3264 §7) for the first audio stream."""
    if len(answer.media) != len(offer.media):
        # RFC 3264 §6: the answer MUST contain exactly as many m= lines as the offer
        raise SdpError(f"answer has {len(answer.media)} m= lines, the offer had {len(offer.media)}")
    saw_audio = False
    for index, (om, am) in enumerate(zip(offer.media, answer.media, strict=True)):
        if om.media != "audio" or am.media != "audio" or om.port == 0 or am.port == 0:
            continue
        saw_audio = True
        conn, rtcp_address, rtcp_port = _remote_endpoints(answer, am, index)
        offered = {f.payload_type: f for f in om.rtp_formats()}
        answered = [f for f in am.rtp_formats() if f.payload_type in offered]
        codecs = tuple(f for f in answered if not f.is_telephone_event and f.encoding_name.upper() != "CN")
        if not codecs:
            continue
        events = [f for f in answered if f.is_telephone_event]
        held_by_address = conn.is_null
        we_send = _can_send(om.direction) and _can_recv(am.direction) and not held_by_address
        we_recv = _can_recv(om.direction) and _can_send(am.direction)
        direction = _direction(we_send, we_recv)
        return NegotiatedMedia(
            remote_address=conn.address,
            remote_port=am.port,
            remote_rtcp_address=rtcp_address,
            remote_rtcp_port=rtcp_port,
            codec=codecs[0],
            telephone_event=_pick_telephone_event(events, codecs[0].clock_rate),
            ptime=am.ptime or om.ptime or 20,
            direction=direction,
            on_hold=held_by_address or not _can_recv(am.direction),
            local_port=om.port,
            media_index=index,
            codecs=codecs,
        )
    if not saw_audio:
        raise SdpError(
            "answer accepted no audio stream",
            status_code=488,
            warning=_warning(304, "Media type not available"),
        )
    raise SdpError(
        "answer has no codec from the offer",
        status_code=488,
        warning=_warning(305, "Incompatible media format"),
    )


def _redirect(previous: SessionDescription, table: dict[str, Direction]) -> SessionDescription:
    media = tuple(
        replace(m, direction=table.get(m.direction, m.direction)) if m.port != 0 else m
        for m in previous.media
    )
    return bump_version(replace(previous, direction=None, media=media))


def make_hold_offer(previous: SessionDescription) -> SessionDescription:
    """Re-offer putting every active stream on hold (RFC 3264 §8.4).

    sendrecv becomes sendonly and recvonly becomes inactive; the version is bumped.
    """
    return _redirect(previous, {"sendrecv": "sendonly", "recvonly": "inactive"})


def make_resume_offer(previous: SessionDescription) -> SessionDescription:
    """Re-offer taking streams off hold: sendonly -> sendrecv, inactive -> recvonly."""
    return _redirect(previous, {"sendonly": "sendrecv", "inactive": "recvonly"})
