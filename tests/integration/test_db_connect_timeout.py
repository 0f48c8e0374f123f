"""A PostgreSQL that accepts the connection and never answers (a hung
server, a half-open partition) fails a connect in seconds, not minutes."""

import socket
import threading
import time

import pytest
from sqlalchemy.exc import OperationalError

from config.db import CONNECT_TIMEOUT_S, make_engine


def test_a_silent_server_fails_the_connect_within_the_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # and never say a word
            except OSError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{listener.getsockname()[1]}"
                         "/nothing")
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError):
            with engine.connect():
                pass
        assert time.monotonic() - started < CONNECT_TIMEOUT_S * 2 + 1
    finally:
        stop.set()
        thread.join(2)
        engine.dispose()
        for conn in held:
            conn.close()
        listener.close()
