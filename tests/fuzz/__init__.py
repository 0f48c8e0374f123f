"""Coverage-guided fuzz targets (atheris) and their seed corpora.

Every target module has:

- ``INSTRUMENT``: the packages atheris instruments for coverage;
- ``setup()``: imports what it tests and returns ``one_input(data: bytes)``,
  which feeds one input to the code under test and raises
  ``ContractViolation`` (or lets an unexpected exception through) when the
  code breaks its documented contract. Returning normally means the input
  was handled the documented way (a value, or the documented error).

``bench/fuzz.py`` runs them under atheris (``--help``); the corpora in
``corpus/<target>/`` are replayed by plain pytest (tests/unit/test_fuzz.py)
on every run, so a crash once found stays a test without atheris.
"""

from __future__ import annotations

import importlib
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

TARGETS = ("radius_packet", "radius_server", "netflow", "cabinet_forms")


class ContractViolation(AssertionError):
    """The code under test did something its contract does not allow."""


def check(condition: bool, message: str) -> None:
    """``assert`` that survives ``python -O``."""
    if not condition:
        raise ContractViolation(message)


def load(name: str):
    """The target module ``tests.fuzz.<name>``."""
    if name not in TARGETS:
        raise KeyError(f"no fuzz target {name!r}; there are {', '.join(TARGETS)}")
    return importlib.import_module(f"tests.fuzz.{name}")


def corpus_files(name: str) -> list[Path]:
    folder = CORPUS / name
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
