"""The README's promise: `abonent demo` starts everything on SQLite with
nothing else, and a newcomer can log into the cabinet and the RADIUS server."""

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import need_program

ABONENT = str(Path(sys.executable).with_name("abonent"))
PORT_OPTIONS = {"--cabinet-port": socket.SOCK_STREAM, "--auth-port": socket.SOCK_DGRAM,
                "--acct-port": socket.SOCK_DGRAM, "--collector-port": socket.SOCK_DGRAM,
                "--coa-port": socket.SOCK_DGRAM}
ANY_PORT = [part for option in PORT_OPTIONS for part in (option, "0")]


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABONENT_")}
    env["ABONENT_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.mark.parametrize("option", list(PORT_OPTIONS))
def test_a_taken_port_is_named_in_one_sentence(tmp_path, option):
    """No traceback: the port, what it is for and the option that moves it."""
    with socket.socket(socket.AF_INET, PORT_OPTIONS[option]) as holder:
        holder.bind(("127.0.0.1", 0))
        if PORT_OPTIONS[option] == socket.SOCK_STREAM:
            holder.listen()
        port = holder.getsockname()[1]
        arguments = list(ANY_PORT)
        arguments[arguments.index(option) + 1] = str(port)
        result = subprocess.run([ABONENT, "demo", *arguments, "--seconds", "5"],
                                capture_output=True, text=True, env=_env(tmp_path),
                                cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert f"port {port} " in message and "already in use" in message
    assert f"with {option} PORT" in message, message
    # Nothing was started or created.
    assert "abonent demo is running" not in result.stdout
    assert not (tmp_path / "data" / "abonent.sqlite3").exists()


def test_demo_runs_on_sqlite_and_lets_a_newcomer_in(tmp_path):
    radclient = need_program("radclient")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABONENT_")}
    env["ABONENT_DATA_DIR"] = str(tmp_path / "data")
    # Every port 0: the suite passes while a real demo (or anything else)
    # holds 8080, 1812, 1813, 2055 or 3799 on this machine.
    process = subprocess.Popen([ABONENT, "demo", *ANY_PORT, "--seconds", "60"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, cwd=tmp_path)
    try:
        output = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(output)
        assert "Press Ctrl-C" in text, text
        assert (tmp_path / "data" / "abonent.sqlite3").exists()
        url = re.search(r"cabinet\s*: (http://\S+)\s+login: (\S+)\s+password: (\S+)", text)
        auth_port = re.search(r"radius\s*: \S+ auth (\d+)", text).group(1)
        base, login, password = url.groups()

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(base + "login", timeout=10).read().decode()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or \
            re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
        form = urllib.parse.urlencode({"csrf_token": token.group(1), "login": login,
                                       "password": password}).encode()
        dashboard = opener.open(base + "login", data=form, timeout=10).read().decode()
        balance = re.search(r'data-test="balance">([^<]+)<', dashboard).group(1)
        assert "100001" in dashboard
        # The simulated BRAS brought the demo subscriber online.
        assert "10.10.0.2" in dashboard
        assert "1 session(s) online" in text
        assert re.sub(r"\s", "", balance) in ("500,00₽", "₽500.00"), balance

        reply = subprocess.run([radclient, "-x", "-r", "1", "-t", "3", f"127.0.0.1:{auth_port}",
                                "auth", "testing123"],
                               input=f"User-Name={login},User-Password={password},"
                                      "Message-Authenticator=0x00\n",
                               capture_output=True, text=True, timeout=30)
        assert "Access-Accept" in reply.stdout, reply.stdout + reply.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=30)[0]
    assert process.returncode == 0, rest
    assert "abonent demo stopped" in rest
