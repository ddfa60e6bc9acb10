"""Inbound security: who may place calls and send requests to Trunkline.

``InboundGuard`` is the ``SipCore`` guard for out-of-dialog requests other than
OPTIONS/REGISTER/ACK/CANCEL (INVITE, MESSAGE, REFER...):

1. a request whose source IP is in a configured trunk's ``inbound_ips`` is admitted as
   coming from that trunk (``identity`` = the ``Trunk``);
2. else, when endpoints (local phones) are configured, it must carry digest credentials
   for one of them: without (or with stale) credentials it gets a ``407 Proxy
   Authentication Required`` challenge (RFC 3261 section 22.3), with wrong ones 403
   (``identity`` = the ``Endpoint``);
3. everything else gets ``403 Forbidden``.

``allow_loopback`` (default: only when no trunk and no endpoint is configured, i.e. a fresh
install) admits requests from 127.0.0.0/8 and ::1 so ``trunkline serve`` answers local
test calls out of the box. Rejections are logged through ``RateLimitedLog``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from trunkline.gateway.config import Endpoint, Trunk
from trunkline.gateway.sip.auth import AuthError, DigestServer, parse_credentials
from trunkline.gateway.sip.core import Admission, RateLimitedLog
from trunkline.gateway.sip.message import SipRequest
from trunkline.gateway.sip.transaction import Peer

__all__ = ["GuardStats", "InboundGuard", "endpoint_password_lookup", "is_loopback"]

log = logging.getLogger("trunkline.switch.security")

#: Source addresses whose trunk (or lack of one) :meth:`InboundGuard.trunk_for` remembers.
_TRUNK_MEMO_SIZE = 4096


@functools.lru_cache(maxsize=1024)
def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback); memoised (every request asks)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def endpoint_password_lookup(endpoints: Iterable[Endpoint]) -> dict[str, Endpoint]:
    """Endpoints by user name."""
    return {e.username: e for e in endpoints}


@dataclass(slots=True)
class GuardStats:
    """What the guard decided."""

    trunk: int = 0
    endpoint: int = 0
    loopback: int = 0
    challenged: int = 0
    forbidden: int = 0


class InboundGuard:
    """The inbound ACL + digest policy (see the module docstring)."""

    def __init__(
        self,
        trunks: Iterable[Trunk],
        endpoints: Iterable[Endpoint],
        *,
        realm: str = "trunkline",
        digest: DigestServer | None = None,
        allow_loopback: bool | None = None,
    ) -> None:
        self.trunks = tuple(trunks)
        self._trunk_memo: dict[str, Trunk | None] = {}
        self._memo_trunks: tuple[Trunk, ...] = self.trunks
        self.endpoints = endpoint_password_lookup(endpoints)
        self.digest = digest or DigestServer(realm, secrets.token_bytes(32), algorithms=("MD5",))
        if allow_loopback is None:
            allow_loopback = not self.trunks and not self.endpoints
        self.allow_loopback = allow_loopback
        self.stats = GuardStats()
        self.rejections = RateLimitedLog(log)

    def trunk_for(self, address: str) -> Trunk | None:
        """The trunk whose ``inbound_ips`` contain ``address`` (memoised per address: a trunk
        sends every call from the same few addresses)."""
        trunks = self.trunks
        memo = self._trunk_memo
        if self._memo_trunks is not trunks:
            memo.clear()
            self._memo_trunks = trunks
        try:
            return memo[address]
        except KeyError:
            pass
        trunk = next((t for t in trunks if t.accepts_from(address)), None)
        if len(memo) >= _TRUNK_MEMO_SIZE:
            memo.clear()
        memo[address] = trunk
        return trunk

    def _password(self, username: str) -> str | None:
        endpoint = self.endpoints.get(username)
        return endpoint.password if endpoint is not None else None

    def __call__(self, request: SipRequest, source: Peer, now: float) -> Admission:
        """Decide on ``request`` from ``source``."""
        address = source.address[0]
        trunk = self.trunk_for(address)
        if trunk is not None:
            self.stats.trunk += 1
            return Admission(identity=trunk)
        if self.endpoints:
            verdict = self.authenticate(request, now, proxy=True)
            if verdict.admitted:
                self.stats.endpoint += 1
                return verdict
            if verdict.status == 407:
                self.stats.challenged += 1
                return verdict
            self._forbidden(request, source, now, verdict.reason or "bad credentials")
            return verdict
        if self.allow_loopback and is_loopback(address):
            self.stats.loopback += 1
            return Admission(identity="loopback")
        self._forbidden(request, source, now, "not a trunk address and no endpoint credentials")
        return Admission(403, "Forbidden")

    def _forbidden(self, request: SipRequest, source: Peer, now: float, why: str) -> None:
        self.stats.forbidden += 1
        self.rejections.warning(
            now, "403 to %s from %s:%d (From %s): %s",
            request.method, source.address[0], source.address[1], request.headers.get("From"), why,
        )  # fmt: skip

    def authenticate(self, request: SipRequest, now: float, *, proxy: bool) -> Admission:
        """Digest-check ``request`` against the endpoints: 407 (``proxy``) or 401 with a
        challenge when credentials are missing or stale, 403 when wrong, else admitted
        with the ``Endpoint`` as identity (RFC 3261 sections 22.2 and 22.3)."""
        status, header, cred_header = (
            (407, "Proxy-Authenticate", "Proxy-Authorization")
            if proxy
            else (401, "WWW-Authenticate", "Authorization")
        )
        values = request.headers.get_all(cred_header) if cred_header in request.headers else []
        for value in values:
            try:
                credentials = parse_credentials(value)
            except (AuthError, ValueError):
                return Admission(400, "Malformed credentials")
            if credentials.realm != self.digest.realm:
                continue
            result = self.digest.verify(
                credentials, request.method, now=now, password_lookup=self._password, body=request.body
            )
            if result.ok and result.username is not None:
                return Admission(identity=self.endpoints[result.username])
            if result.status_code in (401, 407) or result.challenges:
                challenges = result.challenges or self.digest.challenges(now)
                return Admission(status, None, tuple((header, c.serialize()) for c in challenges))
            return Admission(403, "Forbidden")
        return Admission(status, None, tuple((header, c.serialize()) for c in self.digest.challenges(now)))
