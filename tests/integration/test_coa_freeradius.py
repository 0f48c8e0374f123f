"""FreeRADIUS plays the NAS side: its CoA listener receives our CoA-Request,
decodes it with its own dictionary and acknowledges it."""

import subprocess
import time
from pathlib import Path

from sqlalchemy import select

from aaa import enforcement
from aaa.models import EnforcementJob
from tests.conftest import free_udp_port, need_program
from tests.factories import make_account, make_nas, make_tariff
from tests.integration.test_enforcement import FAST, open_session, spend

CONFIG = """
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = {dir}
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
radacctdir = {dir}
name = freeradius
confdir = {dir}
modconfdir = {dir}
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
  destination = stderr
}}
security {{
  allow_core_dumps = no
}}
client local {{
  ipaddr = 127.0.0.1
  secret = {secret}
}}
modules {{
  always ok {{
    rcode = ok
  }}
}}
server coa {{
  listen {{
    type = coa
    ipaddr = 127.0.0.1
    port = {port}
  }}
  recv-coa {{
    ok
  }}
  send-coa {{
    ok
  }}
}}
"""


def test_freeradius_acknowledges_our_coa(ctx, tmp_path: Path):
    freeradius = need_program("freeradius")
    port = free_udp_port()
    (tmp_path / "radiusd.conf").write_text(CONFIG.format(dir=tmp_path, port=port,
                                                         secret="coa-secret"))
    log = open(tmp_path / "freeradius.log", "w+")
    server = subprocess.Popen([freeradius, "-f", "-X", "-d", str(tmp_path), "-l", "stdout"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while "Ready to process requests" not in (tmp_path / "freeradius.log").read_text():
            assert server.poll() is None, (tmp_path / "freeradius.log").read_text()
            assert time.monotonic() < deadline, "FreeRADIUS did not start"
            time.sleep(0.1)
        with ctx.Session() as session:
            tariff = make_tariff(session, negative_rate_kbps=768)
            account = make_account(session, tariff=tariff.name, credit_limit="100")
            nas = make_nas(session, vendor="mikrotik", secret="coa-secret", coa_port=port)
            open_session(session, account, nas, 4)
            spend(session, account.id, "-3", "t")
            session.commit()
        assert enforcement.run_once(ctx.Session, timers=FAST) == 1
        with ctx.Session() as session:
            job = session.scalars(select(EnforcementJob)).one()
            assert (job.action, job.status, job.last_error) == ("coa", "done", None)
        text = (tmp_path / "freeradius.log").read_text()
        assert "Received CoA-Request" in text
        assert 'Mikrotik-Rate-Limit = "768k/768k"' in text
        assert 'Acct-Session-Id = "sess-4"' in text
    finally:
        server.terminate()
        server.wait(10)
        log.close()
