"""The cabinet's generated secret key: two workers starting at once agree on
one key, and neither ever reads the file before its key is in it (a CI run
saw gunicorn's second worker read the first one's empty, just-created file
and refuse to boot)."""

from __future__ import annotations

import stat
import threading
import time
import types

import pytest

from cabinet import app as cabinet_app
from config.settings import load_settings


def _ctx(data_dir):
    return types.SimpleNamespace(settings=load_settings(environ={"ABONENT_DATA_DIR": str(data_dir)}))


def _load_into(data_dir, results: list, errors: list) -> None:
    """One worker's start: its key into ``results``, or its error into ``errors``."""
    try:
        results.append(cabinet_app.load_secret_key(_ctx(data_dir)))
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def test_a_slow_first_worker_never_shows_a_half_made_key(tmp_path, monkeypatch):
    real = cabinet_app.secrets.token_hex
    first = threading.Event()

    def token_hex(n):
        # The first caller dawdles between deciding to make the key and
        # having it, the second comes through meanwhile.
        if not first.is_set():
            first.set()
            time.sleep(0.3)
        return real(n)

    monkeypatch.setattr(cabinet_app.secrets, "token_hex", token_hex)
    results, errors = [], []
    slow = threading.Thread(target=_load_into, args=(tmp_path, results, errors))
    slow.start()
    assert first.wait(5)
    fast = threading.Thread(target=_load_into, args=(tmp_path, results, errors))
    fast.start()
    slow.join(10)
    fast.join(10)

    assert errors == []
    assert len(results) == 2 and results[0] == results[1] and len(results[0]) == 64
    key_file = tmp_path / cabinet_app.SECRET_KEY_FILE
    assert key_file.read_text() == results[0] + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [cabinet_app.SECRET_KEY_FILE]


def test_many_workers_at_once_agree_on_one_key(tmp_path):
    for round_ in range(20):
        data_dir = tmp_path / str(round_)
        barrier = threading.Barrier(6)
        results, errors = [], []

        def worker():
            barrier.wait()
            _load_into(data_dir, results, errors)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert errors == [] and len(set(results)) == 1 and len(results) == 6
        assert [p.name for p in data_dir.iterdir()] == [cabinet_app.SECRET_KEY_FILE]


def test_an_unusable_key_file_is_refused_and_kept(tmp_path):
    key_file = tmp_path / cabinet_app.SECRET_KEY_FILE
    key_file.write_text("short\n")
    with pytest.raises(RuntimeError, match="holds no usable secret key"):
        cabinet_app.load_secret_key(_ctx(tmp_path))
    assert key_file.read_text() == "short\n"


def test_a_filesystem_without_hard_links_still_gets_one_whole_key(tmp_path, monkeypatch):
    def no_links(_source, _target):
        raise PermissionError(1, "Operation not permitted")   # vfat's answer

    monkeypatch.setattr(cabinet_app.os, "link", no_links)
    key = cabinet_app.load_secret_key(_ctx(tmp_path))
    key_file = tmp_path / cabinet_app.SECRET_KEY_FILE
    assert len(key) == 64 and key_file.read_text() == key + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [cabinet_app.SECRET_KEY_FILE]
    assert cabinet_app.load_secret_key(_ctx(tmp_path)) == key


def test_a_reader_waits_for_a_key_being_written_in_place(tmp_path):
    # Where the key is created in place (no hard links), another worker
    # may open it empty: it reads again rather than refusing to boot.
    key_file = tmp_path / cabinet_app.SECRET_KEY_FILE
    key_file.write_text("")
    writer = threading.Timer(0.2, key_file.write_text, ["k" * 64 + "\n"])
    writer.start()
    try:
        assert cabinet_app.load_secret_key(_ctx(tmp_path)) == "k" * 64
    finally:
        writer.join()
