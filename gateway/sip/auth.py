"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

Sans-I/O: header values in, header values and verdicts out.  ``now`` is always passed
in by the caller; nothing here reads the clock.

* Syntax: ``parse_challenge`` / ``parse_challenges`` / ``DigestChallenge.serialize`` for
  ``WWW-Authenticate`` and ``Proxy-Authenticate``; ``parse_credentials`` /
  ``DigestCredentials.serialize`` for ``Authorization`` and ``Proxy-Authorization``.
* Client: ``answer_challenge`` (or ``ClientAuthState`` to count ``nc`` per nonce).
* Server: ``DigestServer`` issues HMAC-signed, timestamped nonces that verify without
  server state, and keeps a bounded replay cache of the (nonce, nc) pairs it accepted.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

__all__ = [
    "ALGORITHMS",
    "AuthError",
    "AuthResult",
    "AuthStatus",
    "ClientAuthState",
    "DigestChallenge",
    "DigestCredentials",
    "DigestServer",
    "answer_challenge",
    "compute_ha1",
    "compute_response",
    "parse_challenge",
    "parse_challenges",
    "parse_credentials",
    "select_challenge",
]

# RFC 7616 §6.1 / RFC 8760 §2: algorithm token -> hashlib name.  "-sess" variants share it.
_HASHES: Final = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
ALGORITHMS: Final[tuple[str, ...]] = (
    "SHA-512-256",
    "SHA-512-256-sess",
    "SHA-256",
    "SHA-256-sess",
    "MD5",
    "MD5-sess",
)

# RFC 7230 §3.2.6: token = 1*tchar
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# RFC 7235 §2.1: auth-param = token BWS "=" BWS ( token / quoted-string ).  Unquoted values
# are read up to the next comma or space, which also accepts the sloppy values seen in SIP.
_PARAM_RE: Final = re.compile(rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))[ \t]*')
_SCHEME_RE: Final = re.compile(rf"[ \t]*({_TOKEN})(?:[ \t]+|$)")
_NC_RE: Final = re.compile(r"[0-9a-fA-F]{8}")


class AuthError(ValueError):
    """A malformed or unusable challenge or credentials header (a 400 on the server side)."""


def _algorithm(name: str | None) -> tuple[str, bool, str]:
    """(canonical token, is -sess, hashlib name) for an algorithm; absent means MD5 (RFC 7616 §3.3)."""
    token = name or "MD5"
    upper = token.upper()
    sess = upper.endswith("-SESS")
    base = upper[:-5] if sess else upper
    if base not in _HASHES:
        raise AuthError(f"unsupported digest algorithm {token!r}")
    return base + ("-sess" if sess else ""), sess, _HASHES[base]


def _h(hash_name: str, data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.new(hash_name, raw).hexdigest()


def compute_ha1(
    username: str,
    realm: str,
    password: str,
    algorithm: str | None = None,
) -> str:
    """H(username ":" realm ":" password) for ``algorithm`` (RFC 7616 §3.4.2, before -sess)."""
    _, _, hash_name = _algorithm(algorithm)
    return _h(hash_name, f"{username}:{realm}:{password}")


def compute_response(
    *,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    algorithm: str | None = None,
    qop: str | None = None,
    nc: int | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value from the base HA1 (RFC 7616 §3.4.1-§3.4.3, RFC 2617 §3.2.2)."""
    _, sess, hash_name = _algorithm(algorithm)
    if sess:
        # RFC 7616 §3.4.2: A1 = H(unq(username) ":" unq(realm) ":" passwd) ":" unq(nonce) ":" unq(cnonce)
        if cnonce is None:
            raise AuthError("a -sess algorithm needs a cnonce")
        ha1 = _h(hash_name, f"{ha1}:{nonce}:{cnonce}")
    # RFC 7616 §3.4.3: A2 = Method ":" request-uri [ ":" H(entity-body) for auth-int ]
    a2 = f"{method}:{uri}:{_h(hash_name, body)}" if qop == "auth-int" else f"{method}:{uri}"
    ha2 = _h(hash_name, a2)
    if qop is None:
        # RFC 2617 §3.2.2.1 (RFC 2069 compatibility): KD(H(A1), unq(nonce) ":" H(A2))
        return _h(hash_name, f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise AuthError("qop requires nc and cnonce")
    return _h(hash_name, f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


# ------------------------------------------------------------------------------ syntax


def _quote(value: str) -> str:
    # RFC 7230 §3.2.6: quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_challenges(value: str) -> list[tuple[str, dict[str, str]]]:
    """Split a header value into (scheme, params) pairs; params names are lower-cased."""
    results: list[tuple[str, dict[str, str]]] = []
    pos, end = 0, len(value)
    while pos < end:
        scheme = _SCHEME_RE.match(value, pos)
        if scheme is None:
            raise AuthError(f"expected an auth scheme at offset {pos}: {value!r}")
        params: dict[str, str] = {}
        results.append((scheme.group(1), params))
        pos = scheme.end()
        while pos < end:
            match = _PARAM_RE.match(value, pos)
            if match is None:
                raise AuthError(f"malformed auth-param at offset {pos}: {value!r}")
            name = match.group(1).lower()
            if name in params:
                raise AuthError(f"duplicate auth-param {name!r}")
            quoted = match.group(2)
            params[name] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(3)
            pos = match.end()
            if pos < end:
                if value[pos] != ",":
                    raise AuthError(f"expected ',' at offset {pos}: {value!r}")
                pos += 1
                while pos < end and value[pos] in " \t,":
                    pos += 1
                if _PARAM_RE.match(value, pos) is None:
                    break  # the next challenge starts here (RFC 7235 §4.1)
    return results


def _only_digest(value: str) -> dict[str, str]:
    parsed = _split_challenges(value)
    if len(parsed) != 1:
        raise AuthError(f"expected exactly one challenge or credentials, got {len(parsed)}")
    scheme, params = parsed[0]
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported authentication scheme {scheme!r}")
    return params


def _required(params: dict[str, str], *names: str) -> None:
    missing = [n for n in names if n not in params]
    if missing:
        raise AuthError(f"missing digest parameter(s): {', '.join(missing)}")


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in ("true", "false"):
        raise AuthError(f"{name} must be true or false, got {params[name]!r}")
    return value == "true"


_CHALLENGE_KNOWN: Final = frozenset(
    {"realm", "nonce", "algorithm", "qop", "opaque", "stale", "domain", "userhash", "charset"}
)


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A ``Digest`` challenge from ``WWW-Authenticate`` / ``Proxy-Authenticate`` (RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: str | None = None
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    userhash: bool = False
    charset: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: str) -> DigestChallenge:
        """Parse one challenge; raises ``AuthError``."""
        return _challenge_from(_only_digest(value))

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> DigestChallenge:
        """Build from already-split auth-params (unquoted values, any name case)."""
        return _challenge_from({k.lower(): v for k, v in params.items()})

    def serialize(self) -> str:
        """Header value, e.g. ``Digest realm="x", nonce="y", qop="auth", algorithm=MD5``."""
        parts = [f"realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        if self.algorithm is not None:
            parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        if self.charset is not None:
            parts.append(f"charset={self.charset}")
        if self.userhash:
            parts.append("userhash=true")
        parts += [f"{k}={_quote(v)}" for k, v in self.extra]
        return "Digest " + ", ".join(parts)


def _challenge_from(params: dict[str, str]) -> DigestChallenge:
    _required(params, "realm", "nonce")
    qop = tuple(q.strip() for q in params["qop"].split(",") if q.strip()) if "qop" in params else ()
    return DigestChallenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm"),
        qop=qop,
        opaque=params.get("opaque"),
        stale=_flag(params, "stale"),
        domain=params.get("domain"),
        userhash=_flag(params, "userhash"),
        charset=params.get("charset"),
        extra=tuple((k, v) for k, v in params.items() if k not in _CHALLENGE_KNOWN),
    )


def parse_challenge(value: str) -> DigestChallenge:
    """Parse a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value holding one Digest challenge."""
    return DigestChallenge.parse(value)


def parse_challenges(value: str) -> list[DigestChallenge]:
    """All Digest challenges in a header value (other schemes are skipped, RFC 7235 §4.1)."""
    return [_challenge_from(p) for scheme, p in _split_challenges(value) if scheme.lower() == "digest"]


def select_challenge(challenges: Iterable[DigestChallenge]) -> DigestChallenge:
    """The first challenge with an algorithm we support (RFC 8760 §2.4: servers list preferred first)."""
    for challenge in challenges:
        try:
            _algorithm(challenge.algorithm)
        except AuthError:
            continue
        return challenge
    raise AuthError("no challenge uses a supported digest algorithm")


_CREDENTIALS_KNOWN: Final = frozenset(
    {
        "username",
        "username*",
        "realm",
        "nonce",
        "uri",
        "response",
        "algorithm",
        "cnonce",
        "opaque",
        "qop",
        "nc",
        "userhash",
    }
)


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """``Authorization`` / ``Proxy-Authorization`` Digest credentials (RFC 7616 §3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: int | None = None
    userhash: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: str) -> DigestCredentials:
        """Parse one credentials header value; raises ``AuthError``."""
        return cls.from_params(_only_digest(value))

    @classmethod
    def from_params(cls, raw: Mapping[str, str]) -> DigestCredentials:
        """Build from already-split auth-params (unquoted values, any name case)."""
        params = {k.lower(): v for k, v in raw.items()}
        if "username*" in params:
            # RFC 7616 §3.4.4: username* uses the RFC 5987 ext-value encoding
            if "username" in params:
                raise AuthError("both username and username* present")
            charset, _, encoded = params["username*"].partition("'")
            _, _, encoded = encoded.partition("'")
            if charset.upper() != "UTF-8":
                raise AuthError(f"unsupported username* charset {charset!r}")
            try:
                params["username"] = unquote(encoded, encoding="utf-8", errors="strict")
            except UnicodeDecodeError:
                raise AuthError(f"username* is not valid UTF-8: {encoded!r}") from None
        _required(params, "username", "realm", "nonce", "uri", "response")
        qop = params.get("qop")
        nc = None
        if qop is not None:
            _required(params, "cnonce", "nc")
            if not _NC_RE.fullmatch(params["nc"]):
                raise AuthError(f"nc must be 8 hex digits, got {params['nc']!r}")
            nc = int(params["nc"], 16)
        return cls(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"],
            algorithm=params.get("algorithm"),
            cnonce=params.get("cnonce"),
            opaque=params.get("opaque"),
            qop=qop,
            nc=nc,
            userhash=_flag(params, "userhash"),
            extra=tuple((k, v) for k, v in params.items() if k not in _CREDENTIALS_KNOWN),
        )

    def serialize(self) -> str:
        """Header value, e.g. ``Digest username="bob", realm="x", nonce="y", uri="sip:x", ...``."""
        if self.username.isascii():
            parts = [f"username={_quote(self.username)}"]
        else:
            parts = [f"username*=UTF-8''{quote(self.username, safe='')}"]
        parts += [f"realm={_quote(self.realm)}", f"nonce={_quote(self.nonce)}", f"uri={_quote(self.uri)}"]
        parts.append(f"response={_quote(self.response)}")
        if self.algorithm is not None:
            parts.append(f"algorithm={self.algorithm}")
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc:08x}")
        if self.userhash:
            parts.append("userhash=true")
        parts += [f"{k}={_quote(v)}" for k, v in self.extra]
        return "Digest " + ", ".join(parts)


def parse_credentials(value: str) -> DigestCredentials:
    """Parse an ``Authorization`` / ``Proxy-Authorization`` value."""
    return DigestCredentials.parse(value)


# ------------------------------------------------------------------------------ client


def answer_challenge(
    challenge: DigestChallenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    body: bytes = b"",
    cnonce: str | None = None,
    nc: int = 1,
) -> DigestCredentials:
    """Credentials answering ``challenge`` for a request (RFC 7616 §3.4, RFC 3261 §22.2).

    ``qop=auth`` is preferred; ``auth-int`` (hashing ``body``) is used when it is the only
    one offered.  ``uri`` is the Request-URI, e.g. ``sip:bob@example.com``.
    """
    algorithm, sess, hash_name = _algorithm(challenge.algorithm)
    qop: str | None = None
    if challenge.qop:
        if "auth" in challenge.qop:
            qop = "auth"
        elif "auth-int" in challenge.qop:
            qop = "auth-int"
        else:
            raise AuthError(f"no supported qop in {challenge.qop!r}")
    if not 1 <= nc <= 0xFFFFFFFF:
        raise AuthError(f"nc out of range: {nc}")
    if cnonce is None and (qop is not None or sess):
        cnonce = secrets.token_urlsafe(24)
    ha1 = _h(hash_name, f"{username}:{challenge.realm}:{password}")
    response = compute_response(
        ha1=ha1,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        algorithm=algorithm,
        qop=qop,
        nc=nc if qop else None,
        cnonce=cnonce,
        body=body,
    )
    # RFC 7616 §3.4.4: with userhash the username field is H(username ":" realm)
    name = _h(hash_name, f"{username}:{challenge.realm}") if challenge.userhash else username
    return DigestCredentials(
        username=name,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        cnonce=cnonce if (qop is not None or sess) else None,
        opaque=challenge.opaque,
        qop=qop,
        nc=nc if qop else None,
        userhash=challenge.userhash,
    )


class ClientAuthState:
    """Counts ``nc`` per server nonce for a client (RFC 7616 §3.4: nc increments per request)."""

    def __init__(self, max_nonces: int = 64) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._max = max_nonces

    def answer(
        self,
        challenge: DigestChallenge,
        method: str,
        uri: str,
        username: str,
        password: str,
        *,
        body: bytes = b"",
    ) -> DigestCredentials:
        """Like ``answer_challenge`` with the next nc for this nonce."""
        nc = self._counts.pop(challenge.nonce, 0) + 1
        self._counts[challenge.nonce] = nc
        while len(self._counts) > self._max:
            self._counts.popitem(last=False)
        return answer_challenge(challenge, method, uri, username, password, body=body, nc=nc)


# ------------------------------------------------------------------------------ server


class AuthStatus(enum.Enum):
    """Outcome of ``DigestServer.verify``."""

    OK = "ok"
    BAD_RESPONSE = "bad-response"  # wrong password
    UNKNOWN_USER = "unknown-user"
    STALE_NONCE = "stale-nonce"
    INVALID_NONCE = "invalid-nonce"  # not signed by us (e.g. another key)
    REPLAY = "replay"
    WRONG_REALM = "wrong-realm"
    BAD_REQUEST = "bad-request"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Verdict of ``DigestServer.verify``.

    ``status_code`` is the SIP status to send: 200 (go on), 401/407 with ``challenges`` as
    new ``WWW-Authenticate`` values, 403 for bad credentials, 400 for malformed ones.
    """

    status: AuthStatus
    status_code: int
    reason: str
    username: str | None = None
    challenges: tuple[DigestChallenge, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the request is authenticated."""
        return self.status is AuthStatus.OK


PasswordLookup = Callable[[str], str | None]
"""username -> password, or None for an unknown user."""
Ha1Lookup = Callable[[str, str, str], str | None]
"""(username, realm, algorithm without -sess) -> H(username:realm:password), or None."""

_NONCE_TIME = struct.Struct(">Q")


class DigestServer:
    """Stateless-nonce Digest verifier for one realm (RFC 7616 §3.3, §5.4; RFC 3261 §22.4).

    A nonce is ``base64url(ms-timestamp | 8 random bytes | HMAC-SHA256(secret, realm | ...)[:16])``
    so any node holding ``secret_key`` can check it; accepted (nonce, nc) pairs go into a
    bounded replay cache, whose oldest entries are dropped first when it is full.
    """

    def __init__(
        self,
        realm: str,
        secret_key: bytes,
        nonce_lifetime: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        *,
        qop: tuple[str, ...] = ("auth",),
        opaque: str | None = None,
        userhash: bool = False,
        replay_cache_size: int = 65536,
        clock_skew: float = 5.0,
    ) -> None:
        if not secret_key:
            raise ValueError("secret_key must not be empty")
        self.realm = realm
        self.nonce_lifetime = nonce_lifetime
        self.algorithms = tuple(_algorithm(a)[0] for a in algorithms)
        self.qop = qop
        self.opaque = opaque
        self.userhash = userhash
        self.clock_skew = clock_skew
        self._key = secret_key
        self._seen: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._seen_max = replay_cache_size

    # -- nonces
    def make_nonce(self, now: float) -> str:
        """A fresh signed nonce stamped with ``now``."""
        raw = _NONCE_TIME.pack(int(now * 1000)) + secrets.token_bytes(8)
        return base64.urlsafe_b64encode(raw + self._sign(raw)).decode("ascii").rstrip("=")

    def _sign(self, raw: bytes) -> bytes:
        return hmac.new(self._key, self.realm.encode("utf-8") + b"\0" + raw, hashlib.sha256).digest()[:16]

    def nonce_time(self, nonce: str) -> float | None:
        """Issue time of a nonce we signed, else None (forged, truncated, other key)."""
        try:
            blob = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return None
        if len(blob) != 32 or not hmac.compare_digest(self._sign(blob[:16]), blob[16:]):
            return None
        return float(_NONCE_TIME.unpack(blob[:8])[0]) / 1000.0

    def challenge(self, now: float, stale: bool = False, algorithm: str | None = None) -> DigestChallenge:
        """One challenge (default: our most preferred algorithm) with a fresh nonce."""
        return DigestChallenge(
            realm=self.realm,
            nonce=self.make_nonce(now),
            algorithm=algorithm or self.algorithms[0],
            qop=self.qop,
            opaque=self.opaque,
            stale=stale,
            userhash=self.userhash,
        )

    def challenges(self, now: float, stale: bool = False) -> tuple[DigestChallenge, ...]:
        """One challenge per algorithm, preferred first (RFC 8760 §2.4), sharing one nonce."""
        nonce = self.make_nonce(now)
        return tuple(
            DigestChallenge(self.realm, nonce, a, self.qop, self.opaque, stale, userhash=self.userhash)
            for a in self.algorithms
        )

    # -- verification
    def verify(
        self,
        credentials: DigestCredentials,
        method: str,
        *,
        now: float,
        password_lookup: PasswordLookup | None = None,
        ha1_lookup: Ha1Lookup | None = None,
        body: bytes = b"",
        request_uri: str | None = None,
        userhash_lookup: Callable[[str], str | None] | None = None,
    ) -> AuthResult:
        """Check credentials for a request with ``method`` (and ``body`` for auth-int).

        Pass ``password_lookup`` (username -> password) or ``ha1_lookup``; ``request_uri``,
        when given, must equal the credentials' ``uri`` (RFC 7616 §3.4.6).
        """
        if password_lookup is None and ha1_lookup is None:
            raise ValueError("verify needs password_lookup or ha1_lookup")
        c = credentials
        if c.realm != self.realm:
            return AuthResult(AuthStatus.WRONG_REALM, 400, f"credentials are for realm {c.realm!r}")
        try:
            algorithm = _algorithm(c.algorithm)[0]
        except AuthError as exc:
            return AuthResult(AuthStatus.BAD_REQUEST, 400, str(exc))
        if algorithm not in self.algorithms:
            return AuthResult(AuthStatus.BAD_REQUEST, 400, f"algorithm {algorithm} was not offered")
        if self.qop and c.qop is None:
            return AuthResult(AuthStatus.BAD_REQUEST, 400, "qop is required")
        if c.qop is not None and (c.qop not in self.qop or c.nc is None or c.cnonce is None):
            return AuthResult(AuthStatus.BAD_REQUEST, 400, f"bad qop/nc/cnonce (qop={c.qop!r})")
        if request_uri is not None and c.uri != request_uri:
            return AuthResult(AuthStatus.BAD_REQUEST, 400, f"digest uri {c.uri!r} is not the Request-URI")
        if self.opaque is not None and c.opaque != self.opaque:
            return AuthResult(AuthStatus.BAD_REQUEST, 400, "opaque does not match")
        issued = self.nonce_time(c.nonce)
        if issued is None or issued > now + self.clock_skew:
            return AuthResult(
                AuthStatus.INVALID_NONCE, 401, "nonce not issued by us", None, self.challenges(now)
            )

        username: str | None = c.username
        if c.userhash:
            username = userhash_lookup(c.username) if userhash_lookup is not None else None
        base = algorithm.removesuffix("-sess")
        ha1: str | None = None
        if username is not None:
            if ha1_lookup is not None:
                ha1 = ha1_lookup(username, self.realm, base)
            elif password_lookup is not None and (password := password_lookup(username)) is not None:
                ha1 = compute_ha1(username, self.realm, password, base)
        if ha1 is None:
            return AuthResult(AuthStatus.UNKNOWN_USER, 403, "unknown user", username)
        expected = compute_response(
            ha1=ha1,
            nonce=c.nonce,
            method=method,
            uri=c.uri,
            algorithm=algorithm,
            qop=c.qop,
            nc=c.nc,
            cnonce=c.cnonce,
            body=body,
        )
        if not hmac.compare_digest(expected, c.response.lower()):
            return AuthResult(AuthStatus.BAD_RESPONSE, 403, "wrong password", username)
        expires = issued + self.nonce_lifetime
        if now > expires:
            # RFC 7616 §3.3: stale=true means the response was right but the nonce is old
            return AuthResult(
                AuthStatus.STALE_NONCE, 401, "stale nonce", username, self.challenges(now, stale=True)
            )
        if not self._remember(c.nonce, c.nc or 0, expires, now):
            return AuthResult(AuthStatus.REPLAY, 401, "nonce count replayed", username, self.challenges(now))
        return AuthResult(AuthStatus.OK, 200, "ok", username)

    def _remember(self, nonce: str, nc: int, expires: float, now: float) -> bool:
        key = (nonce, nc)
        if key in self._seen:
            return False
        while self._seen and next(iter(self._seen.values())) < now:
            self._seen.popitem(last=False)
        self._seen[key] = expires
        while len(self._seen) > self._seen_max:
            self._seen.popitem(last=False)
        return True
