"""The corpora of the fuzz targets that need a database (a scratch SQLite
file each, made by the target's own setup) replay without a contract broken:
every crash once found stays fixed even where atheris is not installed."""

from __future__ import annotations

import logging

import pytest

from tests.fuzz import corpus_files, load


@pytest.mark.parametrize("target", ["radius_server", "cabinet_forms"])
def test_the_corpus_replays_without_a_contract_broken(target):
    files = corpus_files(target)
    assert len(files) >= 5, f"the {target} corpus lost its seeds"
    handlers = logging.getLogger("aaa").handlers[:]
    try:
        one_input = load(target).setup()
        for path in files:
            one_input(path.read_bytes())
    finally:
        logging.getLogger("aaa").handlers[:] = handlers
