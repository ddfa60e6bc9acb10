"""Trunkline configuration: one YAML file validated into typed, frozen objects at start-up.

``load_config(path)`` reads the file (``None`` gives :meth:`Config.default`), substitutes
``${ENV_VAR}`` / ``${ENV_VAR:-default}`` in string values and checks every key, collecting all
problems into one :class:`ConfigError` whose lines read
``config/trunkline.yaml: trunks[0].port: expected an integer 1-65535, got 'abc'``.
``config/trunkline.yaml`` is the documented example of every option.

Relative paths (``storage.*``, ``sip.tls.*``) are relative to the working directory of the
process. Omitted keys take their defaults, which keep everything on 127.0.0.1.

Inbound number patterns (``numbers[].match``), tried in file order, first match wins:

* ``*`` matches every number;
* a literal such as ``+14155550100`` (digits, ``+``, ``#``) matches that number exactly;
* in a pattern, ``X`` is any digit, ``Z`` is 1-9, ``N`` is 2-9, ``[1-5]`` / ``[136]`` is a digit
  set and a trailing ``*`` matches any remaining characters: ``+1415555XXXX``, ``+44*``;
* ``/regex/`` is a Python regular expression that must match the whole number.

Called numbers are compared with spaces, dashes, dots and parentheses removed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trunkline import __version__
from trunkline.gateway.config_schema import (
    ConfigError,
    IPNetwork,
    Reader,
    is_host,
    load_yaml,
    parse_ip,
    parse_network,
    split_host_port,
    substitute_env,
)

__all__ = [
    "Account",
    "Config",
    "ConfigError",
    "Endpoint",
    "HttpConfig",
    "ListenAddress",
    "LoggingConfig",
    "NumberRoute",
    "RtpConfig",
    "SipConfig",
    "SipTimers",
    "StorageConfig",
    "TlsConfig",
    "Trunk",
    "compile_number_pattern",
    "load_config",
]

TRANSPORTS = ("udp", "tcp", "tls")
METHODS = ("GET", "POST")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEMO_ACCOUNT_FILE = "demo-account.json"
DEFAULT_USER_AGENT = f"Trunkline/{__version__}"

_ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# RFC 3261 section 25.1: user = 1*( unreserved / escaped / user-unreserved ); kept to the usual subset.
_SIP_USER = re.compile(r"[A-Za-z0-9_.!~*'()&=+$,;?/-]{1,64}")
_SEPARATORS = re.compile(r"[\s().-]")


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One SIP listening socket, written ``udp:127.0.0.1:5060`` or ``tls:[::1]:5061``."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Certificate and key for ``tls:`` listeners, and how outbound TLS checks its peers."""

    cert: Path | None = None
    key: Path | None = None
    ca_file: Path | None = None
    verify_peer: bool = True


@dataclass(frozen=True, slots=True)
class SipTimers:
    """RFC 3261 section 17.1.1.1 timer values, in milliseconds."""

    t1: int = 500
    t2: int = 4000
    t4: int = 5000


@dataclass(frozen=True, slots=True)
class SipConfig:
    """``sip:`` section: listeners, advertised address, TLS, timers and limits."""

    listen: tuple[ListenAddress, ...] = (
        ListenAddress("udp", "127.0.0.1", 5060),
        ListenAddress("tcp", "127.0.0.1", 5060),
    )
    advertise_host: str | None = None
    advertise_port: int | None = None
    tls: TlsConfig = field(default_factory=TlsConfig)
    timers: SipTimers = field(default_factory=SipTimers)
    max_message_size: int = 65535
    user_agent: str = DEFAULT_USER_AGENT
    connection_idle_timeout: float = 120.0


@dataclass(frozen=True, slots=True)
class RtpConfig:
    """``rtp:`` section: the media address and the UDP port range for RTP (even) and RTCP (odd)."""

    address: str = "127.0.0.1"
    port_min: int = 20000
    port_max: int = 29999


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """``http:`` section: REST API / webhook listener and the public URL the world sees."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class Account:
    """A Twilio-style account: SID (``AC`` + 32 hex) and the auth token for Basic auth/signatures."""

    sid: str
    auth_token: str = field(repr=False)
    friendly_name: str = "Trunkline account"
    debugger_webhook: str | None = None


@dataclass(frozen=True, slots=True)
class NumberRoute:
    """Inbound routing for the numbers matching ``match``; an empty ``voice_url`` is the demo app."""

    match: str
    account: str
    voice_url: str | None = None
    voice_method: str = "POST"
    voice_fallback_url: str | None = None
    voice_fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    sms_url: str | None = None
    sms_method: str = "POST"
    pattern: re.Pattern[str] = field(default=re.compile(r".*", re.S), repr=False, compare=False)

    @property
    def uses_demo_app(self) -> bool:
        """True when calls go to the built-in demo application."""
        return not self.voice_url

    def matches(self, number: str) -> bool:
        """Does the called ``number`` (separators ignored) match this route's pattern?"""
        return self.pattern.fullmatch(_SEPARATORS.sub("", number)) is not None


@dataclass(frozen=True, slots=True)
class Trunk:
    """A SIP trunk (carrier): where to send calls, how to authenticate, whom to accept calls from."""

    name: str
    host: str
    port: int = 5060
    transport: str = "udp"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    register: bool = False
    expires: int = 3600
    inbound_ips: tuple[IPNetwork, ...] = ()
    from_domain: str | None = None
    outbound: bool = True
    options_ping: float = 0.0

    def accepts_from(self, address: str) -> bool:
        """True when a request from IP ``address`` belongs to this trunk (``inbound_ips``)."""
        try:
            ip = parse_ip(address)
        except ValueError:
            return False
        return any(ip in network for network in self.inbound_ips)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A local SIP user (phone, softphone) that registers to Trunkline."""

    username: str
    password: str = field(repr=False)
    account: str


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where state lives: the SQLite database, recordings and the media/TwiML cache."""

    data_dir: Path = Path("var")
    database: Path = Path("var/trunkline.db")
    recordings_dir: Path = Path("var/recordings")
    cache_dir: Path = Path("var/cache")


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """``logging:`` section."""

    level: str = "INFO"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration (``source`` is the file it came from, if any)."""

    sip: SipConfig
    rtp: RtpConfig
    http: HttpConfig
    accounts: tuple[Account, ...]
    numbers: tuple[NumberRoute, ...]
    trunks: tuple[Trunk, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    storage: StorageConfig = field(default_factory=StorageConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: Path | None = None

    @classmethod
    def default(cls, storage: StorageConfig | None = None) -> Config:
        """Everything on 127.0.0.1, state under ``./var``, one demo account, all numbers to the demo app.

        The demo account's SID and token are generated once and kept in
        ``<data_dir>/demo-account.json`` so they stay the same across restarts.
        """
        storage = storage or StorageConfig()
        account = demo_account(storage.data_dir)
        return cls(
            sip=SipConfig(),
            rtp=RtpConfig(),
            http=HttpConfig(),
            accounts=(account,),
            numbers=(NumberRoute(match="*", account=account.sid),),
            storage=storage,
        )

    def route(self, number: str) -> NumberRoute | None:
        """The first ``numbers`` entry matching the called ``number``, or ``None``."""
        return next((route for route in self.numbers if route.matches(number)), None)

    def account(self, sid: str) -> Account | None:
        """The account with this SID, or ``None``."""
        return next((account for account in self.accounts if account.sid == sid), None)


def demo_account(data_dir: Path) -> Account:
    """Load the demo account from ``<data_dir>/demo-account.json``, creating it on first use."""
    path = data_dir / DEMO_ACCOUNT_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if (
            isinstance(saved, dict)
            and _ACCOUNT_SID.fullmatch(str(saved.get("sid", "")))
            and saved.get("auth_token")
        ):
            return Account(str(saved["sid"]), str(saved["auth_token"]), "Demo account")
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise ConfigError(
            [f"{path}: cannot read the demo account ({exc}); delete the file to regenerate it"]
        ) from None
    account = Account("AC" + secrets.token_hex(16), secrets.token_hex(16), "Demo account")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"sid": account.sid, "auth_token": account.auth_token}, out)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot save the demo account ({exc})"]) from None
    return account


def compile_number_pattern(text: str) -> re.Pattern[str]:
    """Compile a ``numbers[].match`` pattern (grammar in the module docstring); ``ValueError`` if bad."""
    text = text.strip()
    if text == "*":
        return re.compile(r".*", re.S)
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        try:
            return re.compile(text[1:-1])
        except re.error as exc:
            raise ValueError(f"bad regular expression: {exc}") from None
    body = _SEPARATORS.sub("", text)
    if not body:
        raise ValueError("empty pattern")
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char.isdigit() or char == "#":
            out.append(re.escape(char))
        elif char == "+" and i == 0:
            out.append(r"\+")
        elif char in "xX":
            out.append("[0-9]")
        elif char in "zZ":
            out.append("[1-9]")
        elif char in "nN":
            out.append("[2-9]")
        elif char == "[":
            end = body.find("]", i)
            digits = body[i + 1 : end] if end > 0 else ""
            if not re.fullmatch(r"(\d(-\d)?)+", digits):
                raise ValueError("a digit set looks like [1-5] or [136]")
            out.append(f"[{digits}]")
            i = end
        elif char == "*" and i == len(body) - 1:
            out.append(".*")
        else:
            raise ValueError(f"unexpected {char!r} at position {i + 1}")
        i += 1
    return re.compile("".join(out))


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file; ``None`` gives :meth:`Config.default`.

    ``env`` replaces ``os.environ`` for ``${VAR}`` substitution (tests). Raises
    :class:`ConfigError` listing every problem, each line prefixed by the file name.
    """
    if path is None:
        return Config.default()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read the file: {exc}"]) from None
    data, errors = load_yaml(text)
    if errors:
        raise ConfigError([f"{path}: {e}" for e in errors])
    data, env_errors = substitute_env(data, env)
    reader = Reader()
    config = _read_config(reader, data, path)
    # A value whose ${VAR} failed is reported once, by the substitution, not again as a bad value.
    env_paths = {error.partition(": ")[0] for error in env_errors}
    errors = env_errors + [e for e in reader.errors if e.partition(": ")[0] not in env_paths]
    if errors or config is None:
        raise ConfigError([f"{path}: {e}" for e in errors])
    return config


# --- sections ---------------------------------------------------------------------------------

_TOP_KEYS = ("sip", "rtp", "http", "accounts", "numbers", "trunks", "endpoints", "storage", "logging")


def _read_config(r: Reader, data: object, source: Path) -> Config | None:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        r.error("", f"the file must hold a mapping of sections ({', '.join(_TOP_KEYS)}), got {_kind(data)}")
        return None
    top = r.mapping(data, "", _TOP_KEYS)
    sip = _read_sip(r, top.get("sip"))
    rtp = _read_rtp(r, top.get("rtp"))
    http = _read_http(r, top.get("http"))
    storage = _read_storage(r, top.get("storage"))
    logging_section = r.mapping(top.get("logging"), "logging", ("level",))
    log = LoggingConfig(level=r.get_choice(logging_section, "logging", "level", "INFO", LOG_LEVELS))
    accounts = _read_accounts(r, top.get("accounts"))
    account_sids = [a.sid for a in accounts]
    if r.errors:
        # Cross-references below would only repeat earlier problems.
        account_sids = account_sids or ["AC" + "0" * 32]
    elif not accounts:
        accounts = (demo_account(storage.data_dir),)
        account_sids = [accounts[0].sid]
    if "numbers" in top and top["numbers"] is not None:
        numbers = _read_numbers(r, top["numbers"], account_sids)
    else:
        numbers = (NumberRoute(match="*", account=account_sids[0]),)
    trunks = _read_trunks(r, top.get("trunks"))
    endpoints = _read_endpoints(r, top.get("endpoints"), account_sids)
    if r.errors:
        return None
    return Config(sip, rtp, http, accounts, numbers, trunks, endpoints, storage, log, source)


def _kind(value: object) -> str:
    return "a list" if isinstance(value, list) else f"{type(value).__name__} {value!r}"[:60]


def _read_listen(text: str) -> ListenAddress:
    transport, sep, rest = text.partition(":")
    if not sep or transport.lower() not in TRANSPORTS:
        raise ValueError("start with udp:, tcp: or tls:")
    transport = transport.lower()
    host, port = split_host_port(rest, 5061 if transport == "tls" else 5060)
    parse_ip(host)
    return ListenAddress(transport, host, port)


def _read_sip(r: Reader, raw: object) -> SipConfig:
    keys = (
        "listen",
        "advertise",
        "tls",
        "timers",
        "max_message_size",
        "user_agent",
        "connection_idle_timeout",
    )
    m = r.mapping(raw, "sip", keys)
    listen: list[ListenAddress] = []
    if m.get("listen") is None:
        listen = list(SipConfig().listen)
    else:
        what = "a listen address like udp:127.0.0.1:5060, tcp:[::1]:5060 or tls:127.0.0.1:5061"
        for item_path, item in r.items(m["listen"], "sip.listen"):
            value = r.convert_value(item, item_path, None, what, _read_listen)
            if value is not None:
                if value in listen:
                    r.error(item_path, f"{value} is listed twice")
                listen.append(value)
        if m["listen"] == []:
            r.error("sip.listen", "expected at least one listen address")
    advertise_host: str | None = None
    advertise_port: int | None = None
    advertised = r.convert(
        m, "sip", "advertise", None, "a host or host:port (IPv6 in brackets)", lambda s: split_host_port(s, 0)
    )
    if advertised is not None:
        if is_host(advertised[0]):
            advertise_host, advertise_port = advertised[0], advertised[1] or None
        else:
            r.error("sip.advertise", f"expected a host or host:port, got {advertised[0]!r}")
    tls_map = r.mapping(m.get("tls"), "sip.tls", ("cert", "key", "ca_file", "verify_peer"))
    tls = TlsConfig(
        cert=_path(r, tls_map, "sip.tls", "cert", None),
        key=_path(r, tls_map, "sip.tls", "key", None),
        ca_file=_path(r, tls_map, "sip.tls", "ca_file", None),
        verify_peer=r.get_bool(tls_map, "sip.tls", "verify_peer", True),
    )
    if any(item.transport == "tls" for item in listen):
        for name in ("cert", "key"):
            if getattr(tls, name) is None:
                r.error(f"sip.tls.{name}", "required when sip.listen has a tls: address")
    t_map = r.mapping(m.get("timers"), "sip.timers", ("t1", "t2", "t4"))
    timers = SipTimers(
        t1=r.get_int(t_map, "sip.timers", "t1", 500, lo=50, hi=60_000),
        t2=r.get_int(t_map, "sip.timers", "t2", 4000, lo=100, hi=600_000),
        t4=r.get_int(t_map, "sip.timers", "t4", 5000, lo=100, hi=600_000),
    )
    if timers.t2 < timers.t1:
        r.error("sip.timers.t2", f"must be at least sip.timers.t1 ({timers.t1}), got {timers.t2}")
    return SipConfig(
        listen=tuple(listen),
        advertise_host=advertise_host,
        advertise_port=advertise_port,
        tls=tls,
        timers=timers,
        max_message_size=r.get_int(m, "sip", "max_message_size", 65535, lo=1500, hi=1 << 20),
        user_agent=r.get_str(
            m, "sip", "user_agent", DEFAULT_USER_AGENT, what="a non-empty string", allow_empty=False
        ),
        connection_idle_timeout=r.get_float(
            m, "sip", "connection_idle_timeout", 120.0, lo=1.0, hi=86400.0, unit="seconds"
        ),
    )


def _port_range(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,5})\s*-\s*(\d{1,5})", text)
    if not match:
        raise ValueError("")
    low, high = int(match.group(1)), int(match.group(2))
    if not (1024 <= low < high <= 65535):
        raise ValueError("need 1024 <= first < last <= 65535")
    return low, high


def _read_rtp(r: Reader, raw: object) -> RtpConfig:
    m = r.mapping(raw, "rtp", ("address", "ports"))
    address = r.convert(m, "rtp", "address", parse_ip("127.0.0.1"), "an IP address", parse_ip)
    low, high = r.convert(m, "rtp", "ports", (20000, 29999), "a port range like 20000-29999", _port_range)
    return RtpConfig(address=str(address), port_min=low, port_max=high)


def _read_http(r: Reader, raw: object) -> HttpConfig:
    m = r.mapping(raw, "http", ("listen", "public_url"))
    what = "host:port like 127.0.0.1:8080 or [::1]:8080"
    host, port = r.convert(m, "http", "listen", ("127.0.0.1", 8080), what, _http_listen)
    public_url = r.get_url(m, "http", "public_url")
    if public_url is None:
        public_url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    return HttpConfig(host=host, port=port, public_url=public_url.rstrip("/"))


def _http_listen(text: str) -> tuple[str, int]:
    host, port = split_host_port(text, None)
    parse_ip(host)
    return host, port


def _path(r: Reader, m: Mapping[str, object], path: str, key: str, default: Path | None) -> Path | None:
    value = r.get_str(m, path, key, None, what="a file or directory path", allow_empty=False)
    return Path(value) if value else default


def _read_storage(r: Reader, raw: object) -> StorageConfig:
    m = r.mapping(raw, "storage", ("data_dir", "database", "recordings_dir", "cache_dir"))
    data_dir = _path(r, m, "storage", "data_dir", Path("var")) or Path("var")
    return StorageConfig(
        data_dir=data_dir,
        database=_path(r, m, "storage", "database", data_dir / "trunkline.db") or data_dir,
        recordings_dir=_path(r, m, "storage", "recordings_dir", data_dir / "recordings") or data_dir,
        cache_dir=_path(r, m, "storage", "cache_dir", data_dir / "cache") or data_dir,
    )


def _read_accounts(r: Reader, raw: object) -> tuple[Account, ...]:
    accounts: list[Account] = []
    for path, item in r.items(raw, "accounts"):
        m = r.mapping(item, path, ("sid", "auth_token", "friendly_name", "debugger_webhook"))
        if not m and not isinstance(item, dict):
            continue
        sid = r.get_str(m, path, "sid", pattern=_ACCOUNT_SID, what="'AC' followed by 32 lowercase hex digits")
        token = r.get_str(m, path, "auth_token", what="a non-empty string", allow_empty=False)
        name = r.get_str(m, path, "friendly_name", "Trunkline account")
        hook = r.get_url(m, path, "debugger_webhook")
        if sid and any(a.sid == sid for a in accounts):
            r.error(f"{path}.sid", f"account {sid} is defined twice")
        if sid and token:
            accounts.append(Account(sid, token, name, hook))
    return tuple(accounts)


def _account_ref(r: Reader, m: Mapping[str, object], path: str, sids: list[str]) -> str:
    if m.get("account") is None:
        if len(sids) == 1:
            return sids[0]
        r.error(f"{path}.account", "required when more than one account is defined")
        return ""
    sid = r.get_str(m, path, "account", "")
    if sid and sid not in sids:
        r.error(f"{path}.account", f"expected the sid of an account in 'accounts', got {sid!r}")
    return str(sid)


def _read_numbers(r: Reader, raw: object, sids: list[str]) -> tuple[NumberRoute, ...]:
    keys = (
        "match", "account", "voice_url", "voice_method", "voice_fallback_url", "voice_fallback_method",
        "status_callback", "status_callback_method", "sms_url", "sms_method",
    )  # fmt: skip
    routes: list[NumberRoute] = []
    for path, item in r.items(raw, "numbers"):
        m = r.mapping(item, path, keys)
        if not isinstance(item, dict):
            continue
        what = "'*', an E.164 number, a pattern like +1415555XXXX or +44*, or /regex/"
        if isinstance(m.get("match"), int) and not isinstance(m.get("match"), bool):
            r.error(f"{path}.match", f"expected {what} (quote it), got {m['match']!r}")
            continue
        pattern = r.convert(m, path, "match", None, what, compile_number_pattern)
        if m.get("match") is None:
            r.error(f"{path}.match", "required key is missing")
        account = _account_ref(r, m, path, sids)
        route = NumberRoute(
            match=str(m.get("match", "")),
            account=account,
            voice_url=r.get_url(m, path, "voice_url"),
            voice_method=r.get_choice(m, path, "voice_method", "POST", METHODS),
            voice_fallback_url=r.get_url(m, path, "voice_fallback_url"),
            voice_fallback_method=r.get_choice(m, path, "voice_fallback_method", "POST", METHODS),
            status_callback=r.get_url(m, path, "status_callback"),
            status_callback_method=r.get_choice(m, path, "status_callback_method", "POST", METHODS),
            sms_url=r.get_url(m, path, "sms_url"),
            sms_method=r.get_choice(m, path, "sms_method", "POST", METHODS),
        )
        if pattern is not None:
            routes.append(_with_pattern(route, pattern))
    return tuple(routes)


def _with_pattern(route: NumberRoute, pattern: re.Pattern[str]) -> NumberRoute:
    object.__setattr__(route, "pattern", pattern)
    return route


def _read_trunks(r: Reader, raw: object) -> tuple[Trunk, ...]:
    keys = (
        "name", "host", "port", "transport", "username", "password", "register", "expires",
        "inbound_ips", "from_domain", "outbound", "options_ping",
    )  # fmt: skip
    trunks: list[Trunk] = []
    for path, item in r.items(raw, "trunks"):
        m = r.mapping(item, path, keys)
        if not isinstance(item, dict):
            continue
        name = r.get_str(m, path, "name", pattern=_NAME, what="a name of letters, digits, '_', '.' or '-'")
        if name and any(t.name == name for t in trunks):
            r.error(f"{path}.name", f"trunk {name!r} is defined twice")
        host = r.get_str(m, path, "host", pattern=None, what="a host name or IP address")
        if host is not None and not is_host(host):
            r.error(f"{path}.host", f"expected a host name or IP address, got {host!r}")
        transport = r.get_choice(m, path, "transport", "udp", TRANSPORTS)
        port = r.get_int(m, path, "port", 5061 if transport == "tls" else 5060, lo=1, hi=65535)
        username = r.get_str(m, path, "username", None, pattern=_SIP_USER, what="a SIP user name")
        password = r.get_str(m, path, "password", None)
        register = r.get_bool(m, path, "register", False)
        if register and not (username and password):
            r.error(f"{path}.register", "registration needs both username and password")
        networks: list[IPNetwork] = []
        for ip_path, ip_item in r.items(m.get("inbound_ips"), f"{path}.inbound_ips"):
            what = "an IP address or CIDR network like 203.0.113.0/24"
            network = r.convert_value(ip_item, ip_path, None, what, parse_network)
            if network is not None:
                networks.append(network)
        from_domain = r.get_str(m, path, "from_domain", None, what="a domain name")
        if from_domain is not None and not is_host(from_domain):
            r.error(f"{path}.from_domain", f"expected a domain name, got {from_domain!r}")
        trunk = Trunk(
            name=name or "",
            host=host or "",
            port=port,
            transport=transport,
            username=username,
            password=password,
            register=register,
            expires=r.get_int(m, path, "expires", 3600, lo=60, hi=86400 * 7),
            inbound_ips=tuple(networks),
            from_domain=from_domain,
            outbound=r.get_bool(m, path, "outbound", True),
            options_ping=r.get_float(m, path, "options_ping", 0.0, lo=0.0, hi=86400.0, unit="seconds"),
        )
        trunks.append(trunk)
    return tuple(trunks)


def _read_endpoints(r: Reader, raw: object, sids: list[str]) -> tuple[Endpoint, ...]:
    endpoints: list[Endpoint] = []
    for path, item in r.items(raw, "endpoints"):
        m = r.mapping(item, path, ("username", "password", "account"))
        if not isinstance(item, dict):
            continue
        username = r.get_str(m, path, "username", pattern=_SIP_USER, what="a SIP user name")
        if username and any(e.username == username for e in endpoints):
            r.error(f"{path}.username", f"endpoint {username!r} is defined twice")
        password = r.get_str(m, path, "password", what="a non-empty string", allow_empty=False)
        account = _account_ref(r, m, path, sids)
        endpoints.append(Endpoint(username or "", password or "", account))
    return tuple(endpoints)
