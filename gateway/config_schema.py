"""Validation toolkit for the configuration file: YAML loading, ``${ENV}`` substitution, typed readers.

:mod:`trunkline.gateway.config` describes *what* the configuration contains; this module holds the
generic machinery it uses to read one YAML document into typed values while collecting every
error (with its key path, e.g. ``trunks[0].port``) instead of stopping at the first one.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

__all__ = [
    "ConfigError",
    "Reader",
    "describe",
    "load_yaml",
    "substitute_env",
]

T = TypeVar("T")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` holds one line per problem, each naming the file.

    Example line: ``config/trunkline.yaml: trunks[0].port: expected an integer 1-65535, got 'abc'``.
    """

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


class EnvStr(str):
    """A string that came (at least partly) from an environment variable.

    Readers accept such a string where a number or a boolean is expected (``port: ${SIP_PORT}``),
    while a literal YAML string in that place stays an error.
    """

    __slots__ = ()


def describe(value: object) -> str:
    """Show an offending value in an error message, the way it was written in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(str(value)) if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- YAML -------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe loader that reports duplicate mapping keys instead of silently keeping the last one."""

    duplicate_errors: list[str]


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            loader.duplicate_errors.append(
                f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                f"(first defined on line {seen[key] + 1})"
            )
        if isinstance(key, str):
            seen[key] = key_node.start_mark.line
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str) -> tuple[object, list[str]]:
    """Parse one YAML document; return ``(data, errors)`` (syntax errors carry line and column)."""
    loader = _StrictLoader(text)
    loader.duplicate_errors = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return None, [f"{where}invalid YAML: {exc.problem or exc.context}"]
    except yaml.YAMLError as exc:
        return None, [f"invalid YAML: {exc}"]
    finally:
        loader.dispose()
    return data, list(loader.duplicate_errors)


# --- ${ENV} substitution ----------------------------------------------------------------------

_ENV_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _substitute_one(text: str, path: str, env: Mapping[str, str], errors: list[str]) -> str:
    if "${" not in text:
        return text
    used_env = False

    def replace(match: re.Match[str]) -> str:
        nonlocal used_env
        token = match.group(0)
        if token == "$${":
            return "${"
        body = match.group(1)
        if body is None:
            errors.append(f"{path}: unterminated '${{' in {describe(text)} (write '$${{' for a literal)")
            return token
        name, has_default, default = body.partition(":-")
        if not _ENV_NAME.match(name):
            errors.append(f"{path}: invalid environment variable name {name!r} in {describe(text)}")
            return token
        used_env = True
        if name in env:
            return env[name]
        if has_default:
            return default
        errors.append(
            f"{path}: environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
        )
        return ""

    result = _ENV_TOKEN.sub(replace, text)
    return EnvStr(result) if used_env else result


def substitute_env(
    data: object, env: Mapping[str, str] | None = None, path: str = ""
) -> tuple[object, list[str]]:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in every string value of a YAML tree.

    ``$${`` stands for a literal ``${``. Returns the new tree and the errors (unset variable
    without a default, bad name, unterminated reference), each with its key path.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    errors: list[str] = []

    def walk(node: object, where: str) -> object:
        if isinstance(node, str):
            return _substitute_one(node, where or "(top level)", environ, errors)
        if isinstance(node, dict):
            return {k: walk(v, join(where, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(data, path), errors


def join(path: str, key: object) -> str:
    """Key path of ``key`` under ``path``: ``join("sip", "listen") == "sip.listen"``."""
    return f"{path}.{key}" if path else str(key)


# --- typed readers ----------------------------------------------------------------------------

_MISSING: Any = object()


class Reader:
    """Collects errors while reading typed values out of plain YAML data.

    Each ``get_*`` method takes the mapping, its key path and a key; on a bad value it records
    ``"<path>.<key>: expected ..., got ..."`` and returns the default, so reading carries on and
    every problem of the file is reported at once.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        """Record one problem at ``path``."""
        self.errors.append(f"{path}: {message}" if path else message)

    def mapping(self, value: object, path: str, known: Iterable[str]) -> dict[str, object]:
        """Check that ``value`` is a mapping with only ``known`` keys; ``None`` reads as empty."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {describe(value)}")
            return {}
        names = list(known)
        for key in value:
            if not isinstance(key, str) or key not in names:
                close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                hint = (
                    f" (did you mean '{close[0]}'?)" if close else f" (expected one of: {', '.join(names)})"
                )
                self.error(join(path, key), f"unknown key{hint}")
        return {k: v for k, v in value.items() if isinstance(k, str) and k in names}

    def items(self, value: object, path: str) -> list[tuple[str, object]]:
        """Read a list; return ``(item_path, item)`` pairs. ``None`` reads as an empty list."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"expected a list, got {describe(value)}")
            return []
        return [(f"{path}[{i}]", item) for i, item in enumerate(value)]

    def _raw(self, data: Mapping[str, object], path: str, key: str, default: object) -> object:
        value = data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                self.error(join(path, key), "required key is missing")
            return _MISSING
        return value

    def get_str(
        self,
        data: Mapping[str, object],
        path: str,
        key: str,
        default: Any = _MISSING,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "a string",
        allow_empty: bool = True,
    ) -> Any:
        """A string (numbers are not silently converted); ``pattern`` must match it in full."""
        value = self._raw(data, path, key, default)
        if value is _MISSING:
            return None if default is _MISSING else default
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            self.error(join(path, key), f"expected {what}, got {describe(value)}")
            return None if default is _MISSING else default
        if not allow_empty and not value.strip():
            self.error(join(path, key), f"expected {what}, got an empty string")
            return None if default is _MISSING else default
        return str(value)

    def get_int(
        self, data: Mapping[str, object], path: str, key: str, default: Any = _MISSING, *, lo: int, hi: int
    ) -> Any:
        """An integer in ``lo..hi`` (a digit string is accepted only when it came from ``${ENV}``)."""
        value = self._raw(data, path, key, default)
        if value is _MISSING:
            return default if default is not _MISSING else lo
        number = parse_int(value)
        if number is None or not lo <= number <= hi:
            self.error(join(path, key), f"expected an integer {lo}-{hi}, got {describe(value)}")
            return default if default is not _MISSING else lo
        return number

    def get_float(
        self,
        data: Mapping[str, object],
        path: str,
        key: str,
        default: float,
        *,
        lo: float,
        hi: float,
        unit: str,
    ) -> float:
        """A number (int or float) in ``lo..hi``."""
        value = self._raw(data, path, key, default)
        if value is _MISSING:
            return default
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, EnvStr):
            try:
                number = float(value)
            except ValueError:
                number = None
        if number is None or not lo <= number <= hi:
            self.error(join(path, key), f"expected a number of {unit} {lo:g}-{hi:g}, got {describe(value)}")
            return default
        return number

    def get_bool(self, data: Mapping[str, object], path: str, key: str, default: bool) -> bool:
        """``true`` or ``false`` (``${ENV}`` values may also say yes/no/on/off/1/0)."""
        value = self._raw(data, path, key, default)
        if value is _MISSING:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, EnvStr):
            lowered = value.strip().lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
        self.error(join(path, key), f"expected true or false, got {describe(value)}")
        return default

    def get_choice(
        self, data: Mapping[str, object], path: str, key: str, default: str, choices: tuple[str, ...]
    ) -> str:
        """One of ``choices`` (compared case-insensitively, returned as spelled in ``choices``)."""
        value = self._raw(data, path, key, default)
        if value is _MISSING:
            return default
        if isinstance(value, str):
            for choice in choices:
                if value.strip().lower() == choice.lower():
                    return choice
        self.error(join(path, key), f"expected one of {', '.join(choices)}, got {describe(value)}")
        return default

    def get_url(self, data: Mapping[str, object], path: str, key: str) -> str | None:
        """An absolute http(s) URL, or ``None`` when absent or empty."""
        value = self._raw(data, path, key, None)
        if value is _MISSING or value == "":
            return None
        if isinstance(value, str) and is_http_url(value):
            return value
        self.error(join(path, key), f"expected an http:// or https:// URL, got {describe(value)}")
        return None

    def convert(
        self,
        data: Mapping[str, object],
        path: str,
        key: str,
        default: T,
        what: str,
        parse: Callable[[str], T],
    ) -> T:
        """A string turned into a value by ``parse``, which raises ``ValueError`` when it is wrong."""
        value = self._raw(data, path, key, default)
        if value is _MISSING:
            return default
        return self.convert_value(value, join(path, key), default, what, parse)

    def convert_value(self, value: object, path: str, default: T, what: str, parse: Callable[[str], T]) -> T:
        """Like :meth:`convert` for a value already in hand (a list item), at key path ``path``."""
        if isinstance(value, str):
            try:
                return parse(value.strip())
            except ValueError as exc:
                detail = f" ({exc})" if str(exc) else ""
                self.error(path, f"expected {what}, got {describe(value)}{detail}")
                return default
        self.error(path, f"expected {what}, got {describe(value)}")
        return default


def parse_int(value: object) -> int | None:
    """``value`` as an int: YAML integers, or digit strings that came from ``${ENV}``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, EnvStr) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def is_http_url(value: str) -> bool:
    """True for an absolute ``http://`` or ``https://`` URL with a host."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value


@functools.lru_cache(maxsize=1024)
def parse_ip(text: str) -> IPAddress:
    """An IPv4 or IPv6 literal (brackets around IPv6 are accepted); memoised (trunk ACL per request)."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("") from None


def parse_network(text: str) -> IPNetwork:
    """An IP address or a CIDR network such as ``203.0.113.0/24`` (host bits must be zero)."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        message = str(exc)
        raise ValueError("host bits set" if "host bits" in message else "") from None


def split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """Split ``host:port``, ``[v6]:port``, ``host`` or ``[v6]`` (when ``default_port`` is given)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("junk after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError("put IPv6 addresses in brackets, e.g. [::1]:5060")
    else:
        host, port_text = text, None
    if port_text is None:
        if default_port is None:
            raise ValueError("missing ':port'")
        port = default_port
    else:
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"port must be 0-65535, got {port_text!r}")
        port = int(port_text)
    if not host:
        raise ValueError("missing host")
    return host, port


_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def is_host(text: str) -> bool:
    """True for an IP literal or a DNS host name."""
    try:
        parse_ip(text)
    except ValueError:
        return bool(_HOSTNAME.fullmatch(text))
    return True
