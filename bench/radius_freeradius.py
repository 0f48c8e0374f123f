"""FreeRADIUS 3.2 (Debian ``freeradius``, ``freeradius-postgresql``) as the
speed peer of the RADIUS benches, started on loopback with a configuration
of its own in a temporary folder (the system service is never touched).

One radiusd process, three virtual servers, each with its own port:

- ``acct_sql``: accounting into PostgreSQL by rlm_sql, FreeRADIUS's own
  schema and queries (mods-config/sql/main/postgresql) in a scratch
  database of its own on the same server as abonent's;
- ``acct_detail``: accounting into a detail file (rlm_detail);
- ``auth_files``: Access-Request by rlm_files (a users file with the bench
  subscribers' Cleartext-Password) and rlm_pap.

Both accounting servers run ``acct_unique`` in preacct, as the stock
``default`` site does. The client is 127.0.0.0/24 with the benches' secret.

    with freeradius(base_url, subscribers=5000) as peer:
        peer.acct_sql_port, peer.acct_detail_port, peer.auth_port, peer.url
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.radius_common import SECRET

SYSTEM_RADDB = Path("/etc/freeradius/3.0")
SCHEMA = SYSTEM_RADDB / "mods-config/sql/main/postgresql/schema.sql"
RADIUSD = "/usr/sbin/freeradius"


def available() -> str | None:
    """Why FreeRADIUS cannot be the peer here, or None."""
    if not os.path.exists(RADIUSD):
        return "FreeRADIUS is not installed (apt-get install freeradius freeradius-postgresql)"
    if not (SYSTEM_RADDB / "mods-available/sql").exists() or not SCHEMA.exists():
        return "rlm_sql's configuration is missing (freeradius-postgresql, freeradius-config)"
    if not os.path.exists("/usr/lib/freeradius/rlm_sql_postgresql.so"):
        return "rlm_sql_postgresql is not installed (apt-get install freeradius-postgresql)"
    return None


@dataclass
class Peer:
    acct_sql_port: int
    acct_detail_port: int
    auth_port: int
    url: str            # the rlm_sql scratch database (SQLAlchemy URL)
    folder: Path
    pid: int

    def radacct_rows(self) -> int:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM radacct")).scalar()
        finally:
            engine.dispose()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _radiusd_conf(folder: Path, ports: dict[str, int]) -> str:
    return f"""
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {folder}/log
raddbdir = {folder}/raddb
radacctdir = {folder}/radacct
name = freeradius
confdir = ${{raddbdir}}
modconfdir = ${{confdir}}/mods-config
certdir = ${{confdir}}/certs
cadir = ${{confdir}}/certs
run_dir = {folder}/run
db_dir = ${{raddbdir}}
libdir = /usr/lib/freeradius
pidfile = ${{run_dir}}/freeradius.pid
correct_escapes = true
max_request_time = 30
cleanup_delay = 5
max_requests = 1048576
hostname_lookups = no
log {{
    destination = files
    colourise = no
    file = ${{logdir}}/radius.log
    auth = no
}}
checkrad = ${{sbindir}}/checkrad
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = yes
}}
proxy_requests = no
client bench {{
    ipaddr = 127.0.0.0/24
    secret = {SECRET.decode()}
}}
# As many threads as the SQL pool has connections (the stock default).
thread pool {{
    start_servers = 32
    max_servers = 32
    min_spare_servers = 3
    max_spare_servers = 32
    max_requests_per_server = 0
    auto_limit_acct = no
}}
modules {{
    $INCLUDE ${{confdir}}/mods-enabled/
}}
policy {{
    $INCLUDE ${{confdir}}/policy.d/
}}
server acct_sql {{
    listen {{
        type = acct
        ipaddr = 127.0.0.1
        port = {ports["acct_sql"]}
    }}
    preacct {{
        acct_unique
    }}
    accounting {{
        sql
    }}
}}
server acct_detail {{
    listen {{
        type = acct
        ipaddr = 127.0.0.1
        port = {ports["acct_detail"]}
    }}
    preacct {{
        acct_unique
    }}
    accounting {{
        detail
    }}
}}
server auth_files {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {ports["auth"]}
    }}
    authorize {{
        files
        pap
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
    }}
}}
"""


def _sql_module(database: str, host: str, port: int, user: str) -> str:
    """The stock rlm_sql configuration, pointed at PostgreSQL."""
    stock = (SYSTEM_RADDB / "mods-available/sql").read_text()
    stock = stock.replace('dialect = "sqlite"', 'dialect = "postgresql"', 1)
    stock = stock.replace('driver = "rlm_sql_null"', 'driver = "rlm_sql_${dialect}"', 1)
    stock = stock.replace('radius_db = "radius"',
                          f'server = "{host}"\n\tport = {port}\n\tlogin = "{user}"\n'
                          f'\tpassword = ""\n\tradius_db = "{database}"', 1)
    return stock


@contextmanager
def freeradius(base_url: str, subscribers: int):
    reason = available()
    if reason is not None:
        raise SystemExit(f"bench: {reason}")
    url = make_url(base_url)
    database = f"freeradius_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    scratch = url.set(database=database)
    folder = Path(tempfile.mkdtemp(prefix="abonent-freeradius-"))
    process = None
    try:
        with psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432,
                             user=url.username or "postgres", password=url.password or "",
                             dbname=database, autocommit=True) as conn:
            conn.execute(SCHEMA.read_text())
        raddb = folder / "raddb"
        raddb.mkdir()
        for name in ("log", "run", "radacct"):
            (folder / name).mkdir()
        shutil.copy(SYSTEM_RADDB / "dictionary", raddb / "dictionary")
        shutil.copytree(SYSTEM_RADDB / "policy.d", raddb / "policy.d")
        shutil.copytree(SYSTEM_RADDB / "mods-config", raddb / "mods-config")
        enabled = raddb / "mods-enabled"
        enabled.mkdir()
        for module in ("always", "expr", "pap", "files", "detail"):
            shutil.copy(SYSTEM_RADDB / "mods-available" / module, enabled / module)
        (enabled / "sql").write_text(_sql_module(database, url.host or "127.0.0.1",
                                                 url.port or 5432, url.username or "postgres"))
        users = raddb / "mods-config/files/authorize"
        users.write_text("".join(f'user{n} Cleartext-Password := "pw{n}"\n'
                                 for n in range(1, subscribers + 1)))
        ports = dict(acct_sql=_free_port(), acct_detail=_free_port(), auth=_free_port())
        (raddb / "radiusd.conf").write_text(_radiusd_conf(folder, ports))
        check = subprocess.run([RADIUSD, "-C", "-d", str(raddb)], capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"bench: FreeRADIUS refused its configuration:\n"
                             f"{check.stdout[-3000:]}{check.stderr[-3000:]}")
        process = subprocess.Popen([RADIUSD, "-f", "-d", str(raddb)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = folder / "log/radius.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if log.exists() and b"Ready to process requests" in log.read_bytes():
                break
            if process.poll() is not None:
                raise SystemExit(f"bench: FreeRADIUS exited: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        else:
            raise SystemExit("bench: FreeRADIUS did not start within 30 s")
        yield Peer(ports["acct_sql"], ports["acct_detail"], ports["auth"],
                   scratch.render_as_string(hide_password=False), folder, process.pid)
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
