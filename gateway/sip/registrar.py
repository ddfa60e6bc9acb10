"""Registrar for local endpoints, sans-I/O (RFC 3261 section 10.3).

``Registrar.handle(request, source, now)`` returns the status and headers to answer a
REGISTER with; it never sends anything. Steps of section 10.3 as implemented:

3/4. digest authentication (401 challenge through the ``authenticate`` callable; the
     authenticated user must own the To address-of-record, else 403);
5.   the AOR's user must be a configured endpoint (404 otherwise);
6.   ``Contact: *`` needs ``Expires: 0`` and no other Contact (400 otherwise);
7.   per contact: expiry from the ``expires`` parameter, else ``Expires``, else the
     default; below ``min_expires`` (but not 0) -> 423 with ``Min-Expires``; above
     ``max_expires`` -> clamped; 0 removes; a refresh with the same Call-ID must have a
     higher CSeq (else 500); the source address and ``Path`` are stored (NAT, RFC 3327);
8.   200 lists every current binding with its remaining ``expires``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trunkline.gateway.sip.core import Admission
from trunkline.gateway.sip.grammar import SipParseError
from trunkline.gateway.sip.message import SipRequest
from trunkline.gateway.sip.transaction import Peer
from trunkline.gateway.switch.location import Binding, LocationService

__all__ = ["RegisterResult", "Registrar"]

Authenticate = Callable[[SipRequest, float], Admission]


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """How to answer one REGISTER."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    user: str | None = None


class Registrar:
    """REGISTER processing against a ``LocationService`` (see the module docstring)."""

    def __init__(
        self,
        location: LocationService,
        users: Callable[[str], bool],
        authenticate: Authenticate | None,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
    ) -> None:
        self.location = location
        self.users = users
        self.authenticate = authenticate
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires

    def handle(self, request: SipRequest, source: Peer, now: float) -> RegisterResult:
        """Process ``request`` (a REGISTER from ``source``) at time ``now``."""
        try:
            aor_user = request.to.uri.user
        except SipParseError:
            return RegisterResult(400, "Bad To")
        if not aor_user:
            return RegisterResult(404, "Not Found")
        if self.authenticate is not None:
            verdict = self.authenticate(request, now)
            if not verdict.admitted:
                return RegisterResult(verdict.status, verdict.reason, verdict.headers)
            username = getattr(verdict.identity, "username", None)
            if username != aor_user:
                return RegisterResult(403, "Forbidden", (("Warning", '399 trunkline "not your AOR"'),))
        if not self.users(aor_user):
            return RegisterResult(404, "Not Found")
        header_expires = request.expires
        call_id = request.call_id
        cseq = request.cseq.seq
        if request.contact_is_wildcard:
            # 10.3 step 6: "*" only with Expires: 0 and as the only Contact.
            if header_expires != 0:
                return RegisterResult(400, "Wildcard Contact needs Expires: 0")
            self.location.remove_all(aor_user)
            return RegisterResult(200, user=aor_user)
        if "*" in request.headers.get_all("Contact"):
            return RegisterResult(400, "Wildcard Contact must stand alone")
        contacts = request.contact
        plan: list[tuple[Binding, int]] = []
        for contact in contacts:
            expires = contact.expires
            if expires is None:
                expires = header_expires if header_expires is not None else self.default_expires
            if 0 < expires < self.min_expires:
                return RegisterResult(423, None, (("Min-Expires", str(self.min_expires)),))
            expires = min(expires, self.max_expires)
            existing = self.location.get(aor_user, contact.uri, now)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                return RegisterResult(500, "Out of order REGISTER")  # 10.3 step 7
            q = 1.0
            q_text = contact.params.get("q")
            if q_text:
                try:
                    q = min(1.0, max(0.0, float(q_text)))
                except ValueError:
                    return RegisterResult(400, f"Bad q {q_text!r}")
            binding = Binding(
                user=aor_user,
                contact=contact.uri,
                expires_at=now + expires,
                source=source,
                call_id=call_id,
                cseq=cseq,
                q=q,
                path=tuple(request.headers.get_all("Path")),
                user_agent=request.headers.get("User-Agent"),
                instance=contact.params.get("+sip.instance"),
            )
            plan.append((binding, expires))
        for binding, expires in plan:
            if expires == 0:
                self.location.remove(aor_user, binding.contact)
            else:
                self.location.update(binding, now)
        headers = [
            ("Contact", f"<{b.contact.serialize()}>;expires={b.expires_in(now)}")
            for b in self.location.lookup(aor_user, now)
        ]
        if request.headers.get_all("Path"):
            headers.extend(("Path", p) for p in request.headers.get_all("Path"))
        return RegisterResult(200, None, tuple(headers), aor_user)
