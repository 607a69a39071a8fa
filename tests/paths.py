"""Where the tests find the repository and their fixtures, wherever a test file sits in tests/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository root (README.md, benchmarks/, scripts/)."""
FIXTURES = REPO / "tests" / "fixtures"
"""Run folders and other files the tests read (see fixtures/README.md)."""
