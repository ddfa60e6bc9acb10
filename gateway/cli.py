"""The ``trunkline`` command: ``serve``, ``check-config`` and ``version``.

``trunkline serve [--config FILE] [--log-level LEVEL]`` runs the gateway (built-in defaults when no
file is given), ``trunkline check-config FILE`` prints ``OK`` or every configuration error (one
per line, each prefixed by the file name) and ``trunkline version`` prints the version.
``python -m trunkline`` is the same command.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from trunkline import __version__
from trunkline.gateway.config import LOG_LEVELS, ConfigError, LoggingConfig, load_config

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``trunkline`` command."""
    parser = argparse.ArgumentParser(
        prog="trunkline", description="Trunkline: self-hosted, Twilio-compatible programmable voice."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    serve = commands.add_parser("serve", help="run the SIP gateway and the HTTP API")
    serve.add_argument("--config", "-c", metavar="FILE", help="YAML configuration file (default: built-in)")
    serve.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=str.upper,
        choices=LOG_LEVELS,
        help=f"override logging.level ({', '.join(LOG_LEVELS)})",
    )

    check = commands.add_parser(
        "check-config", help="validate a configuration file and print OK or the errors"
    )
    check.add_argument("file", metavar="FILE", help="YAML configuration file")

    commands.add_parser("version", help="print the version")
    return parser


def _check_config(path: str) -> int:
    try:
        load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return EXIT_CONFIG
    print("OK")
    return EXIT_OK


def _serve(config_path: str | None, log_level: str | None) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    if log_level:
        config = dataclasses.replace(config, logging=LoggingConfig(level=log_level))
    logging.basicConfig(
        level=config.logging.level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Imported here so that check-config and version stay quick and need no event loop.
    from trunkline.gateway.server import serve

    try:
        serve(config)
    except OSError as exc:
        logging.getLogger("trunkline").error("cannot start: %s", exc)
        return EXIT_CONFIG
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trunkline`` console script; returns the process exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "check-config":
        return _check_config(args.file)
    if args.command == "version":
        print(f"trunkline {__version__}")
        return EXIT_OK
    return _serve(args.config, args.log_level)
