"""Tests for trunkline.gateway.sip.auth (Digest authentication)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

import pytest

from trunkline.gateway.sip.auth import (
    AuthError,
    AuthStatus,
    ClientAuthState,
    DigestChallenge,
    DigestCredentials,
    DigestServer,
    answer_challenge,
    compute_ha1,
    parse_challenge,
    parse_challenges,
    parse_credentials,
    select_challenge,
)

# RFC 7616 §3.9.1
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
)


def test_rfc7616_challenge_parse() -> None:
    challenge = parse_challenge(RFC7616_CHALLENGE)
    assert challenge == DigestChallenge(
        realm="http-auth@example.org",
        nonce=RFC7616_NONCE,
        algorithm="SHA-256",
        qop=("auth", "auth-int"),
        opaque=RFC7616_OPAQUE,
    )
    assert parse_challenge(challenge.serialize()) == challenge


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_worked_example(algorithm: str, response: str) -> None:
    challenge = DigestChallenge(
        realm="http-auth@example.org",
        nonce=RFC7616_NONCE,
        algorithm=algorithm,
        qop=("auth", "auth-int"),
        opaque=RFC7616_OPAQUE,
    )
    creds = answer_challenge(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce=RFC7616_CNONCE, nc=1
    )
    assert creds.response == response
    assert (creds.qop, creds.nc, creds.cnonce, creds.opaque) == ("auth", 1, RFC7616_CNONCE, RFC7616_OPAQUE)
    wire = creds.serialize()
    assert "nc=00000001" in wire and "qop=auth," in wire and f"algorithm={algorithm}" in wire
    assert parse_credentials(wire) == creds


def test_rfc7616_authorization_header_parse() -> None:
    header = (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f'algorithm=MD5, nonce="{RFC7616_NONCE}", nc=00000001, cnonce="{RFC7616_CNONCE}", '
        f'qop=auth, response="8ca523f5e9506fed4657c9700eebdbec", opaque="{RFC7616_OPAQUE}"'
    )
    creds = parse_credentials(header)
    assert (creds.username, creds.uri, creds.nc, creds.qop) == ("Mufasa", "/dir/index.html", 1, "auth")
    assert creds.response == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc2617_example() -> None:
    # RFC 2617 §3.5
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert challenge.algorithm is None and challenge.qop == ("auth", "auth-int")
    creds = answer_challenge(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b"
    )
    assert creds.response == "6629fae49393a05397450978507c4ef1"
    assert creds.algorithm is None  # not echoed when the challenge had none


def test_rfc2069_no_qop_and_auth_int() -> None:
    no_qop = DigestChallenge(realm="r", nonce="n")
    creds = answer_challenge(no_qop, "INVITE", "sip:bob@example.com", "alice", "pw")
    assert creds.qop is None and creds.nc is None and creds.cnonce is None
    assert "nc=" not in creds.serialize()
    # auth-int is used only when it is the only qop; the body is part of the hash
    int_only = DigestChallenge(realm="r", nonce="n", qop=("auth-int",))
    a = answer_challenge(int_only, "INVITE", "sip:b@x", "alice", "pw", body=b"v=0\r\n", cnonce="c")
    b = answer_challenge(int_only, "INVITE", "sip:b@x", "alice", "pw", body=b"v=1\r\n", cnonce="c")
    assert a.qop == "auth-int" and a.response != b.response
    with pytest.raises(AuthError, match="qop"):
        answer_challenge(DigestChallenge("r", "n", qop=("token",)), "INVITE", "sip:b@x", "a", "p")


def test_sess_algorithms_need_cnonce_and_differ() -> None:
    plain = answer_challenge(
        DigestChallenge("r", "n", "SHA-256", ("auth",)), "GET", "/", "u", "p", cnonce="c"
    )
    sess = answer_challenge(
        DigestChallenge("r", "n", "SHA-256-sess", ("auth",)), "GET", "/", "u", "p", cnonce="c"
    )
    assert len(plain.response) == 64 and plain.response != sess.response
    sha512 = answer_challenge(DigestChallenge("r", "n", "SHA-512-256", ("auth",)), "GET", "/", "u", "p")
    assert len(sha512.response) == 64


def test_parse_multiple_challenges_and_select() -> None:
    header = (
        'Digest realm="sip.example.com", nonce="abc", algorithm=SHA-512-256-future, qop="auth", '
        'Digest realm="sip.example.com", nonce="abc", algorithm=SHA-256, qop="auth", '
        'Basic realm="x", Digest realm="sip.example.com", nonce="abc", algorithm=MD5, stale=TRUE'
    )
    challenges = parse_challenges(header)
    assert [c.algorithm for c in challenges] == ["SHA-512-256-future", "SHA-256", "MD5"]
    assert challenges[2].stale is True
    assert select_challenge(challenges).algorithm == "SHA-256"
    with pytest.raises(AuthError, match="supported"):
        select_challenge(challenges[:1])


def test_quoted_string_escapes_and_extras() -> None:
    challenge = parse_challenge(r'digest REALM="a \"quoted\" realm", nonce="n\\1", foo="bar"')
    assert challenge.realm == 'a "quoted" realm' and challenge.nonce == "n\\1"
    assert challenge.extra == (("foo", "bar"),)
    assert parse_challenge(challenge.serialize()) == challenge


def test_non_ascii_username_uses_username_star() -> None:
    creds = answer_challenge(
        DigestChallenge("r", "n", "SHA-256", ("auth",)), "GET", "/", "J\u00e4s\u00f8n", "p"
    )
    wire = creds.serialize()
    assert "username*=UTF-8''J%C3%A4s%C3%B8n" in wire
    assert parse_credentials(wire) == creds


@pytest.mark.parametrize(
    "header",
    [
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        'Digest realm="r"',  # no nonce
        'Digest realm="r", nonce="n", stale=maybe',
        'Digest realm="r", realm="s", nonce="n"',
        'Digest realm="r" nonce="n"',
        'Digest realm="unterminated, nonce="n"',
        "",
    ],
)
def test_malformed_challenges(header: str) -> None:
    with pytest.raises(AuthError):
        parse_challenge(header)


@pytest.mark.parametrize(
    "header",
    [
        'Digest username="u", realm="r", nonce="n", uri="/"',  # no response
        'Digest username="u", realm="r", nonce="n", uri="/", response="x", qop=auth, nc=00000001',
        'Digest username="u", realm="r", nonce="n", uri="/", response="x", qop=auth, nc=1, cnonce="c"',
        'Digest username="u", username*=UTF-8\'\'u, realm="r", nonce="n", uri="/", response="x"',
    ],
)
def test_malformed_credentials(header: str) -> None:
    with pytest.raises(AuthError):
        parse_credentials(header)


# ---------------------------------------------------------------------------- server

USERS = {"alice": "wonderland", "bob": "builder"}
URI = "sip:bob@example.com"


def make_server(**kwargs: object) -> DigestServer:
    return DigestServer("example.com", b"0123456789abcdef", 300, **kwargs)  # type: ignore[arg-type]


def test_full_cycle_sip_register() -> None:
    server = make_server()
    challenges = server.challenges(now=1000.0)
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    header = challenges[0].serialize()
    assert header.startswith('Digest realm="example.com", nonce="') and 'qop="auth"' in header

    client = ClientAuthState()
    challenge = select_challenge([parse_challenge(c.serialize()) for c in challenges])
    creds = client.answer(challenge, "REGISTER", URI, "alice", "wonderland")
    received = parse_credentials(creds.serialize())
    result = server.verify(received, "REGISTER", now=1010.0, password_lookup=USERS.get, request_uri=URI)
    assert result.ok and result.status_code == 200 and result.username == "alice"

    # same nonce, next nc: still fine; the same nc again is a replay
    second = client.answer(challenge, "INVITE", URI, "alice", "wonderland")
    assert second.nc == 2
    assert server.verify(second, "INVITE", now=1020.0, password_lookup=USERS.get).ok
    replay = server.verify(received, "REGISTER", now=1021.0, password_lookup=USERS.get)
    assert replay.status is AuthStatus.REPLAY and replay.status_code == 401
    assert replay.challenges and not replay.challenges[0].stale


def test_stale_nonce_gets_stale_challenge() -> None:
    server = make_server()
    challenge = server.challenge(now=0.0)
    creds = answer_challenge(challenge, "INVITE", URI, "bob", "builder")
    result = server.verify(creds, "INVITE", now=301.0, password_lookup=USERS.get)
    assert result.status is AuthStatus.STALE_NONCE and result.status_code == 401
    assert all(c.stale for c in result.challenges)
    assert "stale=true" in result.challenges[0].serialize()
    # the client answers the new challenge without asking the user again
    retry = answer_challenge(result.challenges[0], "INVITE", URI, "bob", "builder")
    assert server.verify(retry, "INVITE", now=302.0, password_lookup=USERS.get).ok
    # a wrong password with an old nonce is not "stale": it is a bad password
    wrong = answer_challenge(challenge, "INVITE", URI, "bob", "nope")
    assert (
        server.verify(wrong, "INVITE", now=301.0, password_lookup=USERS.get).status is AuthStatus.BAD_RESPONSE
    )


def test_wrong_password_and_unknown_user() -> None:
    server = make_server()
    challenge = server.challenge(now=5.0)
    wrong = server.verify(
        answer_challenge(challenge, "INVITE", URI, "alice", "guess"),
        "INVITE",
        now=6.0,
        password_lookup=USERS.get,
    )
    assert (wrong.status, wrong.status_code, wrong.ok) == (AuthStatus.BAD_RESPONSE, 403, False)
    unknown = server.verify(
        answer_challenge(challenge, "INVITE", URI, "mallory", "x"),
        "INVITE",
        now=6.0,
        password_lookup=USERS.get,
    )
    assert (unknown.status, unknown.status_code) == (AuthStatus.UNKNOWN_USER, 403)


def test_ha1_lookup_and_md5_sess() -> None:
    server = make_server(algorithms=("MD5-sess",))
    stored = {"alice": compute_ha1("alice", "example.com", "wonderland", "MD5")}
    calls: list[tuple[str, str, str]] = []

    def ha1_lookup(user: str, realm: str, algorithm: str) -> str | None:
        calls.append((user, realm, algorithm))
        return stored.get(user)

    challenge = server.challenge(now=1.0)
    assert challenge.algorithm == "MD5-sess"
    creds = answer_challenge(challenge, "BYE", URI, "alice", "wonderland")
    assert server.verify(creds, "BYE", now=2.0, ha1_lookup=ha1_lookup).ok
    assert calls == [("alice", "example.com", "MD5")]


def test_forged_and_future_nonces_are_rechallenged() -> None:
    server = make_server()
    other = DigestServer("example.com", b"another key", 300)
    foreign = answer_challenge(other.challenge(now=1.0), "INVITE", URI, "alice", "wonderland")
    result = server.verify(foreign, "INVITE", now=2.0, password_lookup=USERS.get)
    assert (result.status, result.status_code) == (AuthStatus.INVALID_NONCE, 401) and result.challenges

    genuine = server.challenge(now=10.0)
    raw = bytearray(base64.urlsafe_b64decode(genuine.nonce + "="))
    raw[0] ^= 1  # tamper with the timestamp
    tampered = replace(genuine, nonce=base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("="))
    creds = answer_challenge(tampered, "INVITE", URI, "alice", "wonderland")
    assert (
        server.verify(creds, "INVITE", now=11.0, password_lookup=USERS.get).status is AuthStatus.INVALID_NONCE
    )

    future = answer_challenge(server.challenge(now=100.0), "INVITE", URI, "alice", "wonderland")
    assert (
        server.verify(future, "INVITE", now=50.0, password_lookup=USERS.get).status
        is AuthStatus.INVALID_NONCE
    )
    assert server.nonce_time("not-base64!") is None


def test_bad_requests() -> None:
    server = make_server()
    challenge = server.challenge(now=0.0)
    good = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland")
    lookup = USERS.get

    def check(creds: DigestCredentials, status: AuthStatus, code: int, **kw: object) -> None:
        result = server.verify(creds, "INVITE", now=1.0, password_lookup=lookup, **kw)  # type: ignore[arg-type]
        assert (result.status, result.status_code) == (status, code), result.reason

    check(replace(good, realm="elsewhere"), AuthStatus.WRONG_REALM, 400)
    check(replace(good, qop=None, nc=None), AuthStatus.BAD_REQUEST, 400)
    check(replace(good, algorithm="SHA-512-256"), AuthStatus.BAD_REQUEST, 400)
    check(replace(good, algorithm="RC4"), AuthStatus.BAD_REQUEST, 400)
    check(good, AuthStatus.BAD_REQUEST, 400, request_uri="sip:carol@example.com")
    check(good, AuthStatus.OK, 200, request_uri=URI)
    with pytest.raises(ValueError, match="lookup"):
        server.verify(good, "INVITE", now=1.0)


def test_userhash_cycle() -> None:
    server = make_server(userhash=True)
    challenge = parse_challenge(server.challenge(now=0.0).serialize())
    assert challenge.userhash
    creds = answer_challenge(challenge, "REGISTER", URI, "alice", "wonderland")
    assert creds.userhash and creds.username != "alice" and len(creds.username) == 64
    hashes = {hashlib.sha256(b"alice:example.com").hexdigest(): "alice"}
    result = server.verify(
        parse_credentials(creds.serialize()),
        "REGISTER",
        now=1.0,
        password_lookup=USERS.get,
        userhash_lookup=hashes.get,
    )
    assert result.ok and result.username == "alice"


def test_replay_cache_is_bounded() -> None:
    server = make_server(replay_cache_size=2)
    challenge = server.challenge(now=0.0)
    client = ClientAuthState()
    for _ in range(5):
        creds = client.answer(challenge, "OPTIONS", URI, "bob", "builder")
        assert server.verify(creds, "OPTIONS", now=1.0, password_lookup=USERS.get).ok
    assert len(server._seen) == 2


def test_from_params_matches_header_parsing() -> None:
    params = {"Realm": "example.com", "NONCE": "abc", "qop": "auth", "algorithm": "MD5"}
    assert DigestChallenge.from_params(params) == parse_challenge(
        'Digest realm="example.com", nonce="abc", qop="auth", algorithm=MD5'
    )
    creds = DigestCredentials.from_params(
        {"username": "bob", "realm": "r", "nonce": "n", "uri": URI, "response": "ab", "qop": "auth",
         "nc": "0000000a", "cnonce": "c"}
    )  # fmt: skip
    assert (creds.nc, creds.qop, creds.uri) == (10, "auth", URI)
    with pytest.raises(AuthError, match="UTF-8"):
        DigestCredentials.from_params(
            {"username*": "UTF-8''%ff", "realm": "r", "nonce": "n", "uri": URI, "response": "ab"}
        )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "SHA-512-256"])
def test_interop_with_sippy(algorithm: str) -> None:
    """sippy (a deployed Python B2BUA) answers our challenges and verifies our answers."""
    www = pytest.importorskip("sippy.SipWWWAuthenticate")
    authz = pytest.importorskip("sippy.SipAuthorization")
    # sippy as client: parse our challenge, answer it, we verify
    server = make_server(algorithms=(algorithm,))
    theirs = www.SipWWWAuthenticate(body=server.challenge(now=0.0).serialize())
    theirs.parse()
    assert theirs.supportedAlgorithm() == (True, "auth")
    answer = str(theirs.genAuthHF("alice", "wonderland", "INVITE", URI, qop="auth"))
    assert answer.startswith('Digest username="alice",realm="example.com"')  # no spaces after commas
    result = server.verify(parse_credentials(answer), "INVITE", now=1.0, password_lookup=USERS.get)
    assert result.ok, result.reason
    # sippy as server: we answer sippy's own challenge, sippy verifies
    challenge = www.SipWWWAuthenticate(realm="example.com", algorithm=algorithm)
    ours = answer_challenge(parse_challenge(str(challenge)), "REGISTER", URI, "bob", "builder")
    assert authz.SipAuthorization(body=ours.serialize()).verify("builder", "REGISTER") is True
    assert authz.SipAuthorization(body=ours.serialize()).verify("wrong", "REGISTER") is False
