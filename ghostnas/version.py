"""The ghostnas version, in a module of its own so that any module can record it without
importing the package's public ``__init__`` (which would put a cycle in the import graph)."""

from __future__ import annotations

__all__ = ["VERSION"]

VERSION = "0.1.0"
