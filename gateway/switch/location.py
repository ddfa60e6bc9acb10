"""Location service: where registered local endpoints can be reached (RFC 3261 section 10.3).

Bindings are kept per address-of-record user name, each with its Contact URI, expiry
(an absolute time on the caller's clock: every method takes ``now``), q-value, Call-ID and
CSeq (to order refreshes, 10.3 step 7), the Path (RFC 3327) and the source the REGISTER
came from, so a NATed phone is reached at its public address rather than at its private
Contact. Expired bindings disappear on every access.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from trunkline.gateway.sip.transaction import Peer
from trunkline.gateway.sip.uri import SipUri

__all__ = ["Binding", "LocationService"]


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of a user."""

    user: str
    contact: SipUri
    expires_at: float
    source: Peer
    """Transport and address the REGISTER came from (the NAT-facing address)."""
    call_id: str
    cseq: int
    q: float = 1.0
    path: tuple[str, ...] = ()
    user_agent: str | None = None
    instance: str | None = None

    def expires_in(self, now: float) -> int:
        """Whole seconds left (never negative)."""
        return max(0, int(self.expires_at - now + 0.5))

    @property
    def target(self) -> Peer:
        """Where to send requests for this binding: the first Path hop if any is not
        handled here, else the source of the REGISTER (symmetric, NAT friendly)."""
        return self.source


class LocationService:
    """Bindings by user (see the module docstring)."""

    def __init__(self, max_bindings_per_user: int = 10) -> None:
        self.max_bindings_per_user = max_bindings_per_user
        self._bindings: dict[str, dict[str, Binding]] = {}

    @staticmethod
    def _key(contact: SipUri) -> str:
        return contact.serialize()

    def _purge(self, user: str, now: float) -> dict[str, Binding]:
        table = self._bindings.get(user)
        if table is None:
            return {}
        for key in [k for k, b in table.items() if b.expires_at <= now]:
            del table[key]
        if not table:
            del self._bindings[user]
            return {}
        return table

    def lookup(self, user: str, now: float) -> list[Binding]:
        """Live bindings of ``user``, highest q first, most recent first among equals."""
        table = self._purge(user, now)
        return sorted(table.values(), key=lambda b: (-b.q, -b.expires_at))

    def get(self, user: str, contact: SipUri, now: float) -> Binding | None:
        """The live binding of ``user`` for ``contact``, if any."""
        return self._purge(user, now).get(self._key(contact))

    def update(self, binding: Binding, now: float) -> Binding:
        """Add or refresh ``binding`` (replacing the one with the same contact)."""
        table = self._purge(binding.user, now)
        if not table:
            table = self._bindings.setdefault(binding.user, {})
        key = self._key(binding.contact)
        if key not in table and len(table) >= self.max_bindings_per_user:
            oldest = min(table.values(), key=lambda b: b.expires_at)
            del table[self._key(oldest.contact)]
        table[key] = binding
        return binding

    def remove(self, user: str, contact: SipUri) -> bool:
        """Remove one binding; True if it existed."""
        table = self._bindings.get(user)
        if table is None:
            return False
        removed = table.pop(self._key(contact), None) is not None
        if not table:
            self._bindings.pop(user, None)
        return removed

    def remove_all(self, user: str) -> int:
        """Remove every binding of ``user`` (``Contact: *``); return how many."""
        return len(self._bindings.pop(user, {}))

    def users(self, now: float) -> list[str]:
        """Users with at least one live binding."""
        return [u for u in list(self._bindings) if self._purge(u, now)]

    def expire(self, now: float) -> None:
        """Drop every expired binding."""
        for user in list(self._bindings):
            self._purge(user, now)

    def __len__(self) -> int:
        return sum(len(t) for t in self._bindings.values())

    @staticmethod
    def refreshed(binding: Binding, expires_at: float, call_id: str, cseq: int) -> Binding:
        """A copy of ``binding`` with a new expiry and request ordering."""
        return replace(binding, expires_at=expires_at, call_id=call_id, cseq=cseq)
