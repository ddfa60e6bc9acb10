"""Configuration loading: the documented example, every error path, ${ENV} substitution, defaults."""

from __future__ import annotations

import ipaddress
import json
import textwrap
from pathlib import Path

import pytest

from trunkline.gateway.config import (
    Config,
    ConfigError,
    ListenAddress,
    compile_number_pattern,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "trunkline.yaml"
SID = "AC0123456789abcdef0123456789abcdef"
SID2 = "ACfedcba9876543210fedcba9876543210"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo account is written under ./var: keep it out of the source tree.
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    prefix = f"{path}: "
    assert all(line.startswith(prefix) for line in info.value.errors), info.value.errors
    return [line[len(prefix) :] for line in info.value.errors]


def test_example_file_loads_with_every_section() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.source == EXAMPLE
    assert config.sip.listen == (
        ListenAddress("udp", "127.0.0.1", 5060),
        ListenAddress("tcp", "127.0.0.1", 5060),
    )
    assert str(config.sip.listen[1]) == "tcp:127.0.0.1:5060"
    assert config.sip.tls.cert == Path("var/tls/cert.pem")
    assert (config.sip.timers.t1, config.sip.timers.t2, config.sip.timers.t4) == (500, 4000, 5000)
    assert config.rtp.port_min == 20000 and config.rtp.port_max == 29999
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)
    assert config.accounts[0].sid == SID
    assert config.accounts[0].auth_token == "0123456789abcdef0123456789abcdef"
    assert [n.match for n in config.numbers] == ["+14155550100", "+1415555XXXX", "*"]
    assert config.numbers[0].voice_fallback_method == "GET"
    assert config.numbers[1].account == SID  # defaulted to the only account
    trunk = config.trunks[0]
    assert (trunk.name, trunk.port, trunk.transport, trunk.register, trunk.options_ping) == (
        "carrier1",
        5060,
        "udp",
        True,
        30.0,
    )
    assert trunk.inbound_ips[1] == ipaddress.ip_network("198.51.100.0/24")
    assert trunk.accepts_from("198.51.100.77") and not trunk.accepts_from("198.51.101.1")
    assert trunk.accepts_from("2001:db8::5")
    assert config.endpoints[0].username == "alice"
    assert config.storage.database == Path("var/trunkline.db")
    assert config.logging.level == "INFO"
    # The example is self-contained: no demo account file was needed.
    assert not Path("var/demo-account.json").exists()


def test_example_uses_environment_for_secrets() -> None:
    config = load_config(EXAMPLE, env={"TRUNKLINE_AUTH_TOKEN": "s3cret", "CARRIER1_PASSWORD": "pw"})
    assert config.accounts[0].auth_token == "s3cret"
    assert config.trunks[0].password == "pw"
    assert "s3cret" not in repr(config)  # secrets stay out of logs


def test_number_routing_first_match_wins() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.route("+14155550100").voice_url == "https://app.example.com/voice"  # type: ignore[union-attr]
    assert config.route("+1 (415) 555-0100").voice_url == "https://app.example.com/voice"  # type: ignore[union-attr]
    assert config.route("+14155559999").voice_url == "https://app.example.com/sales"  # type: ignore[union-attr]
    demo = config.route("+33142000000")
    assert demo is not None and demo.uses_demo_app


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("*", ["+1", "alice", ""], []),
        ("+14155550100", ["+14155550100"], ["+141555501000", "14155550100"]),
        ("+1415555XXXX", ["+14155550000", "+14155559999"], ["+1415555000", "+14155550000 1"]),
        ("+1NXXZ", ["+12001", "+19999"], ["+11001", "+12000"]),
        ("+44*", ["+44", "+442071234567"], ["+4", "+33"]),
        ("+1[2-4]0", ["+120", "+140"], ["+150"]),
        ("/\\+33[67]\\d{8}/", ["+33612345678"], ["+33112345678", "+336123456789"]),
    ],
)
def test_number_patterns(pattern: str, yes: list[str], no: list[str]) -> None:
    compiled = compile_number_pattern(pattern)
    assert all(compiled.fullmatch(n) for n in yes)
    assert not any(compiled.fullmatch(n) for n in no)


def test_defaults_without_file_stay_on_loopback() -> None:
    config = load_config(None)
    assert [str(a) for a in config.sip.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert config.http.public_url == "http://127.0.0.1:8080"
    assert config.rtp.address == "127.0.0.1"
    assert config.storage.database == Path("var/trunkline.db")
    assert len(config.accounts) == 1
    route = config.route("+15551234567")
    assert route is not None and route.uses_demo_app and route.account == config.accounts[0].sid


def test_demo_account_is_stable(tmp_path: Path) -> None:
    first = Config.default()
    saved = json.loads((tmp_path / "var" / "demo-account.json").read_text())
    assert saved == {"sid": first.accounts[0].sid, "auth_token": first.accounts[0].auth_token}
    second = Config.default()
    assert second.accounts == first.accounts
    assert (tmp_path / "var" / "demo-account.json").stat().st_mode & 0o077 == 0


def test_corrupt_demo_account_is_reported(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "demo-account.json").write_text("{nope")
    with pytest.raises(ConfigError, match="cannot read the demo account"):
        Config.default()


def test_minimal_file_takes_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "logging: {level: debug}\n")
    config = load_config(path, env={})
    assert config.logging.level == "DEBUG"
    assert config.accounts[0].friendly_name == "Demo account"
    assert config.numbers[0].match == "*" and config.numbers[0].account == config.accounts[0].sid
    assert load_config(write(tmp_path, "", "empty.yaml"), env={}).sip.listen == config.sip.listen


def test_env_substitution(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        sip:
          listen: ["udp:${{SIP_HOST:-127.0.0.1}}:${{SIP_PORT}}"]
          user_agent: "UA $${{literal}} ${{UA:-x}}"
        accounts:
          - sid: {SID}
            auth_token: ${{TOKEN}}
        trunks:
          - name: t
            host: ${{TRUNK_HOST:-sip.example.net}}
            port: ${{TRUNK_PORT:-5070}}
            register: ${{REG:-no}}
            options_ping: ${{PING:-2.5}}
        """,
    )
    config = load_config(path, env={"SIP_PORT": "5099", "TOKEN": "tok", "UA": "y"})
    assert config.sip.listen == (ListenAddress("udp", "127.0.0.1", 5099),)
    assert config.sip.user_agent == "UA ${literal} y"
    assert config.accounts[0].auth_token == "tok"
    trunk = config.trunks[0]
    assert (trunk.host, trunk.port, trunk.register, trunk.options_ping) == (
        "sip.example.net",
        5070,
        False,
        2.5,
    )


def test_env_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        accounts:
          - sid: {SID}
            auth_token: ${{MISSING_TOKEN}}
        trunks:
          - name: t
            host: ${{bad-name}}
            port: ${{PORT}}
            from_domain: "${{UNCLOSED"
        """,
    )
    assert errors_of(path, env={"PORT": "http"}) == [
        "accounts[0].auth_token: environment variable MISSING_TOKEN is not set "
        "(write ${MISSING_TOKEN:-default} to give a default)",
        "trunks[0].host: invalid environment variable name 'bad-name' in '${bad-name}'",
        "trunks[0].from_domain: unterminated '${' in '${UNCLOSED' (write '$${' for a literal)",
        "trunks[0].port: expected an integer 1-65535, got 'http'",
    ]


def test_every_error_is_collected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        sip:
          listn: []
          listen: ["udp:127.0.0.1:99999", "sctp:1.2.3.4:5", "tcp:localhost:5060", 5, "udp:::1:5060"]
          advertise: "bad host:5060"
          timers: {t1: 5000, t2: 400, t4: fast}
          max_message_size: 100
          user_agent: ""
          connection_idle_timeout: 0
          tls: {cert: 12, verify_peer: maybe}
        rtp: {address: nope, ports: 30000-20000}
        http: {listen: "localhost:80", public_url: "ftp://x"}
        accounts:
          - sid: ACxyz
            auth_token: ""
            debugger_webhook: not-a-url
          - sid: AC0123456789abcdef0123456789abcdef
            auth_token: t
            friendly: x
        numbers:
          - match: "+1[a]X"
            account: AC00
            voice_method: PUT
            voice_url: "http:/broken"
          - 12
          - match: 14155550100
          - voice_url: https://ok.example.com/
        trunks:
          - name: a
            host: "bad host"
            port: abc
            transport: sctp
            register: yes
            expires: 10
            inbound_ips: [10.0.0.1/24, 300.1.1.1]
            options_ping: -1
            outbound: "yes"
          - name: a
            host: 10.0.0.1
            username: "bad user"
        endpoints:
          - username: bob
          - {username: bob, password: x}
        storage: {database: ""}
        logging: {level: loud, format: json}
        """,
    )
    assert errors_of(path) == [
        "sip.listn: unknown key (did you mean 'listen'?)",
        "sip.listen[0]: expected a listen address like udp:127.0.0.1:5060, tcp:[::1]:5060 or "
        "tls:127.0.0.1:5061, got 'udp:127.0.0.1:99999' (port must be 0-65535, got '99999')",
        "sip.listen[1]: expected a listen address like udp:127.0.0.1:5060, tcp:[::1]:5060 or "
        "tls:127.0.0.1:5061, got 'sctp:1.2.3.4:5' (start with udp:, tcp: or tls:)",
        "sip.listen[2]: expected a listen address like udp:127.0.0.1:5060, tcp:[::1]:5060 or "
        "tls:127.0.0.1:5061, got 'tcp:localhost:5060'",
        "sip.listen[3]: expected a listen address like udp:127.0.0.1:5060, tcp:[::1]:5060 or "
        "tls:127.0.0.1:5061, got 5",
        "sip.listen[4]: expected a listen address like udp:127.0.0.1:5060, tcp:[::1]:5060 or "
        "tls:127.0.0.1:5061, got 'udp:::1:5060' (put IPv6 addresses in brackets, e.g. [::1]:5060)",
        "sip.advertise: expected a host or host:port, got 'bad host'",
        "sip.tls.cert: expected a file or directory path, got 12",
        "sip.tls.verify_peer: expected true or false, got 'maybe'",
        "sip.timers.t4: expected an integer 100-600000, got 'fast'",
        "sip.timers.t2: must be at least sip.timers.t1 (5000), got 400",
        "sip.max_message_size: expected an integer 1500-1048576, got 100",
        "sip.user_agent: expected a non-empty string, got an empty string",
        "sip.connection_idle_timeout: expected a number of seconds 1-86400, got 0",
        "rtp.address: expected an IP address, got 'nope'",
        "rtp.ports: expected a port range like 20000-29999, got '30000-20000' "
        "(need 1024 <= first < last <= 65535)",
        "http.listen: expected host:port like 127.0.0.1:8080 or [::1]:8080, got 'localhost:80'",
        "http.public_url: expected an http:// or https:// URL, got 'ftp://x'",
        "storage.database: expected a file or directory path, got an empty string",
        "logging.format: unknown key (expected one of: level)",
        "logging.level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'loud'",
        "accounts[0].sid: expected 'AC' followed by 32 lowercase hex digits, got 'ACxyz'",
        "accounts[0].auth_token: expected a non-empty string, got an empty string",
        "accounts[0].debugger_webhook: expected an http:// or https:// URL, got 'not-a-url'",
        "accounts[1].friendly: unknown key (did you mean 'friendly_name'?)",
        "numbers[0].match: expected '*', an E.164 number, a pattern like +1415555XXXX or +44*, "
        "or /regex/, got '+1[a]X' (a digit set looks like [1-5] or [136])",
        "numbers[0].account: expected the sid of an account in 'accounts', got 'AC00'",
        "numbers[0].voice_url: expected an http:// or https:// URL, got 'http:/broken'",
        "numbers[0].voice_method: expected one of GET, POST, got 'PUT'",
        "numbers[1]: expected a mapping, got 12",
        "numbers[2].match: expected '*', an E.164 number, a pattern like +1415555XXXX or +44*, "
        "or /regex/ (quote it), got 14155550100",
        "numbers[3].match: required key is missing",
        "trunks[0].host: expected a host name or IP address, got 'bad host'",
        "trunks[0].transport: expected one of udp, tcp, tls, got 'sctp'",
        "trunks[0].port: expected an integer 1-65535, got 'abc'",
        "trunks[0].register: registration needs both username and password",
        "trunks[0].inbound_ips[0]: expected an IP address or CIDR network like 203.0.113.0/24, "
        "got '10.0.0.1/24' (host bits set)",
        "trunks[0].inbound_ips[1]: expected an IP address or CIDR network like 203.0.113.0/24, "
        "got '300.1.1.1'",
        "trunks[0].expires: expected an integer 60-604800, got 10",
        "trunks[0].outbound: expected true or false, got 'yes'",
        "trunks[0].options_ping: expected a number of seconds 0-86400, got -1",
        "trunks[1].name: trunk 'a' is defined twice",
        "trunks[1].username: expected a SIP user name, got 'bad user'",
        "endpoints[0].password: required key is missing",
        "endpoints[1].username: endpoint 'bob' is defined twice",
    ]


def test_structure_errors(tmp_path: Path) -> None:
    assert errors_of(write(tmp_path, "- a\n- b\n")) == [
        "the file must hold a mapping of sections (sip, rtp, http, accounts, numbers, trunks, endpoints, "
        "storage, logging), got a list"
    ]
    assert errors_of(write(tmp_path, "sip: [1]\nrtps: {}\naccounts: {sid: x}\n")) == [
        "rtps: unknown key (did you mean 'rtp'?)",
        "sip: expected a mapping, got a list",
        "accounts: expected a list, got a mapping",
    ]


def test_yaml_syntax_and_duplicate_keys(tmp_path: Path) -> None:
    assert errors_of(write(tmp_path, "sip:\n  listen: [udp:127.0.0.1:5060\n")) == [
        "line 3, column 1: invalid YAML: expected ',' or ']', but got '<stream end>'"
    ]
    assert errors_of(write(tmp_path, "rtp:\n  address: 127.0.0.1\n  address: 127.0.0.2\n")) == [
        "line 3: duplicate key 'address' (first defined on line 2)"
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.errors[0].startswith(f"{missing}: cannot read the file: ")


def test_cross_checks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        sip:
          listen: ["tls:[::1]:5061", "udp:[::1]", "udp:[::1]:5060"]
        accounts:
          - {{sid: {SID}, auth_token: a}}
          - {{sid: {SID}, auth_token: b}}
          - {{sid: {SID2}, auth_token: c}}
        numbers:
          - match: "*"
        """,
    )
    assert errors_of(path) == [
        "sip.listen[2]: udp:[::1]:5060 is listed twice",
        "sip.tls.cert: required when sip.listen has a tls: address",
        "sip.tls.key: required when sip.listen has a tls: address",
        f"accounts[1].sid: account {SID} is defined twice",
        "numbers[0].account: required when more than one account is defined",
    ]


def test_ipv6_and_advertise(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        sip:
          listen: ["udp:[::1]:5062", "TCP:[::1]"]
          advertise: "sip.example.com:5080"
        http: {listen: "[::1]:8081"}
        """,
    )
    config = load_config(path, env={})
    assert [str(a) for a in config.sip.listen] == ["udp:[::1]:5062", "tcp:[::1]:5060"]
    assert (config.sip.advertise_host, config.sip.advertise_port) == ("sip.example.com", 5080)
    assert config.http.public_url == "http://[::1]:8081"
