"""The ``trunkline`` command: ``serve`` and ``check-config``."""

from trunkline.gateway.cli import main

__all__ = ["main"]
