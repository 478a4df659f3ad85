"""The checkout's folders, for tests that read its files (docs, examples, the Makefile, test data)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
DATA = TESTS / "data"
FAKES = TESTS / "fakes"
