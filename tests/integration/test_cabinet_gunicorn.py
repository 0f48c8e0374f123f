"""The cabinet under gunicorn with contrib/gunicorn.conf.py and cabinet.wsgi:
two workers share the secret key (a login made by one works in the
other) and answer over kept-alive connections."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import free_tcp_port, stop_gunicorn
from tests.integration.cabinet_helpers import cabinet_ctx, seed_subscriber  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gunicorn(db_url, tmp_path):
    port = free_tcp_port()
    env = dict(os.environ, ABONENT_DATABASE_URL=db_url, ABONENT_DATA_DIR=str(tmp_path),
               ABONENT_CABINET_BIND=f"127.0.0.1:{port}", ABONENT_CABINET_WORKERS="2",
               ABONENT_CABINET_THREADS="2")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "-c",
         str(ROOT / "contrib" / "gunicorn.conf.py"), "cabinet.wsgi:app"],
        cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, "gunicorn exited"
        # Closed however the try ends: a socket left to the garbage
        # collector (a first answer slower than the timeout, on a loaded
        # box) warns inside whatever runs then, and warnings are errors.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/login")
            assert conn.getresponse().status == 200
            break
        except OSError:
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        finally:
            conn.close()
    yield port
    stop_gunicorn(process)


def test_gunicorn_serves_the_cabinet(gunicorn, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx, balance="500")
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=10)
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie").split(";")[0]
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"login": subscriber.login, "password": subscriber.password,
                                   "csrf_token": token})
    conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded",
                                          "Cookie": cookie})
    response = conn.getresponse()
    response.read()
    assert response.status == 302
    session_cookie = response.getheader("Set-Cookie").split(";")[0]
    # Many requests on one connection, spread over both workers' threads.
    seen = 0
    for _ in range(20):
        conn.request("GET", "/", headers={"Cookie": session_cookie})
        response = conn.getresponse()
        page = response.read().decode()
        assert response.status == 200 and 'data-test="balance"' in page
        seen += 1
        if response.will_close:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=10)
    assert seen == 20
    others = [http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=10) for _ in range(4)]
    for other in others:
        other.request("GET", f"/api/v1/accounts/{subscriber.account_id}",
                      headers={"Cookie": session_cookie})
    for other in others:
        response = other.getresponse()
        assert response.status == 200 and b'"balance":"500.00"' in response.read()
        other.close()
    conn.close()


@pytest.mark.parametrize("name, value", [("ABONENT_CABINET_WORKERS", "abc"),
                                         ("ABONENT_CABINET_THREADS", "0")])
def test_a_bad_worker_count_is_refused_in_one_sentence(tmp_path, name, value):
    env = dict(os.environ, ABONENT_DATA_DIR=str(tmp_path),
               ABONENT_CABINET_BIND=f"127.0.0.1:{free_tcp_port()}", **{name: value})
    done = subprocess.run(
        [str(Path(sys.executable).with_name("gunicorn")), "-c",
         str(ROOT / "contrib" / "gunicorn.conf.py"), "cabinet.wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"{name}={value!r}: expected a whole number of at least 1" in done.stderr
    assert "Traceback" not in done.stderr
