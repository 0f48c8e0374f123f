"""Calls end to end with real peers: sipp calls sipp through Kamailio, whose
acc_radius accounts every call to abonent's RADIUS server and whose
misc_radius asks abonent whether the caller may call.

200 calls of known lengths (some busy, some not answered) are placed; a
relay between Kamailio and the server sends some accounting requests twice,
holds back some answers so that Kamailio sends the request again, and the
test sends every Stop once more afterwards. The calls stored and what they
cost must equal this test's own computation to the kopeck; a subscriber in
debt is refused by Kamailio (403) because abonent rejected the caller check.
"""

import re
import selectors
import socket
import subprocess
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from aaa.models import VoiceStart
from aaa.server import RadiusServer
from rating import jobs
from rating.models import Account, Call, VoicePlan, VoiceRate, VoiceService
from tests.conftest import free_udp_port, need_program
from tests.factories import make_account, make_nas

ROOT = Path(__file__).resolve().parents[2]
SIPP_DATA = ROOT / "tests" / "data" / "sipp"
CONTRIB = ROOT / "contrib" / "kamailio"
SECRET = "kamailio-voice-secret"

CALLS = 200
CALLERS = ("74951000001", "74951000002", "74951000003")
DEBTOR = "74951000009"
# prefix: (zone, price a minute, first increment s, next increment s, connection fee)
RATES = {"7495": ("Moscow", Decimal("1.50"), 1, 1, Decimal("0.00")),
         "7916": ("Mobile", Decimal("3.00"), 3, 2, Decimal("0.10"))}
CENT = Decimal("0.01")


def planned(index: int) -> tuple[str, str, int, str]:
    """Call ``index``: (caller, dialled, seconds of talk, disposition)."""
    caller = CALLERS[index % len(CALLERS)]
    seconds = 1 + index % 4
    kind = index % 10
    if kind == 3:
        return caller, f"7812{index:07d}", seconds, "busy"
    if kind == 7:
        return caller, f"7813{index:07d}", seconds, "no_answer"
    if kind in (1, 5):
        return caller, f"7916{index:07d}", seconds, "answered"
    return caller, f"7495{index:07d}", seconds, "answered"


def expected_charge(dialled: str, seconds: int) -> Decimal:
    """First increment whole, then whole next increments, the price a
    minute, plus the connection fee; rounded half up to kopecks."""
    _zone, price, first, step, fee = RATES[dialled[:4]]
    billed = first if seconds <= first else first + -(-(seconds - first) // step) * step
    return (fee + price * billed / 60).quantize(CENT, ROUND_HALF_UP)


class AccountingRelay:
    """Between Kamailio and the server's accounting port. Every third new
    request goes out twice at once; the first answer to every twentieth is
    withheld, so Kamailio sends it again after its timeout. Keeps every
    request it forwarded (``sent``) for the test to send again."""

    def __init__(self, server_port: int):
        self.server = ("127.0.0.1", server_port)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.socket, selectors.EVENT_READ, None)
        self.upstream: dict[tuple, socket.socket] = {}
        self.sent: list[bytes] = []
        self.seen: dict[bytes, int] = {}
        self.withheld: set[bytes] = set()
        self.doubled = self.held_back = self.retransmits = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            for key, _ in self.selector.select(timeout=0.2):
                sock = key.fileobj
                data, source = sock.recvfrom(4096)
                if key.data is None:
                    self._request(data, source)
                else:
                    self._reply(data, key.data)

    def _request(self, data: bytes, source):
        out = self.upstream.get(source)
        if out is None:
            out = self.upstream[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            out.bind(("127.0.0.1", 0))
            self.selector.register(out, selectors.EVENT_READ, source)
        # A request is known by its Kamailio socket, identifier and
        # authenticator: Kamailio's processes each have a socket, and their
        # identifiers collide.
        held_key = (source, data[1:2], data[4:20])
        ordinal = self.seen.get(data)
        if ordinal is None:
            ordinal = self.seen[data] = len(self.seen)
            self.sent.append(data)
            if ordinal % 20 == 19:
                self.withheld.add(held_key)
        else:
            self.retransmits += 1
        out.sendto(data, self.server)
        # A request whose answer is withheld is never doubled: the copy's
        # answer (from the duplicate cache, once the first is stored) would
        # reach Kamailio and spare it the retransmit the hold is for.
        if ordinal % 3 == 0 and self.seen[data] == ordinal and held_key not in self.withheld:
            self.doubled += 1
            out.sendto(data, self.server)

    def _reply(self, data: bytes, destination):
        # An answer carries its request's identifier and comes back on the
        # socket of the Kamailio socket that sent it (its authenticator is
        # an MD5 of the request's, so match on those two).
        held = [key for key in self.withheld if key[0] == destination and key[1] == data[1:2]]
        for key in held:
            self.withheld.discard(key)
            self.held_back += 1
            return
        self.socket.sendto(data, destination)

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)
        for sock in [self.socket, *self.upstream.values()]:
            sock.close()


def radius_files(directory: Path, auth_port: int, acct_port: int) -> Path:
    """The shipped radcli configuration, pointed at this test's server."""
    (directory / "servers").write_text(f"127.0.0.1\t{SECRET}\n")
    (directory / "dictionary").write_text((CONTRIB / "dictionary").read_text())
    config = (CONTRIB / "radiusclient.conf").read_text()
    config = re.sub(r"authserver\s.*", f"authserver\t127.0.0.1:{auth_port}", config)
    config = re.sub(r"acctserver\s.*", f"acctserver\t127.0.0.1:{acct_port}", config)
    config = config.replace("/etc/kamailio/radius-servers", str(directory / "servers"))
    config = config.replace("/etc/kamailio/radius-dictionary", str(directory / "dictionary"))
    config = re.sub(r"radius_timeout\s.*", "radius_timeout\t1", config)
    path = directory / "radiusclient.conf"
    path.write_text(config)
    return path


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 15):
    """Until something listens on UDP ``port`` (Kamailio forks its workers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("kamailio exited:\n" + log.read_text()[-3000:])
        if f":{port:04X} " in Path("/proc/net/udp").read_text():
            time.sleep(0.3)
            return
        time.sleep(0.1)
    raise AssertionError("kamailio did not listen:\n" + log.read_text()[-3000:])


def _tail(path: Path) -> str:
    return f"\n{path.name}:\n" + path.read_text()[:4000] if path.exists() else ""


def stop(process: subprocess.Popen):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def seed(ctx):
    with ctx.Session() as session:
        plan = VoicePlan(name="City", free_seconds=0, onnet_free=True)
        session.add(plan)
        session.flush()
        for prefix, (zone, price, first, step, fee) in RATES.items():
            session.add(VoiceRate(plan_id=plan.id, prefix=prefix, zone=zone,
                                  price_per_minute=price, first_increment_s=first,
                                  next_increment_s=step, connection_fee=fee))
        accounts = {}
        for number in CALLERS:
            account = make_account(session, balance="1000.00", credit_limit=Decimal("0"))
            session.add(VoiceService(account_id=account.id, number=number, plan_id=plan.id))
            accounts[number] = account.id
        debtor = make_account(session, credit_limit=Decimal("0"))
        session.add(VoiceService(account_id=debtor.id, number=DEBTOR, plan_id=plan.id))
        make_nas(session, name="kamailio", vendor="sip", secret=SECRET)
        session.commit()
        # The debtor's balance below zero past its credit: the ladder suspends it.
        session.get(Account, debtor.id).balance = Decimal("-250.00")
        session.commit()
    jobs.run_periodic(ctx.Session)
    with ctx.Session() as session:
        assert session.get(Account, debtor.id).profile == "suspended"
        balances = {number: session.get(Account, account_id).balance
                    for number, account_id in accounts.items()}
    return accounts, balances


def sipp(scenario: str, *args, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([need_program("sipp"), "-sf", str(SIPP_DATA / scenario),
                           "-i", "127.0.0.1", "-nostdin", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_calls_through_kamailio_are_stored_and_charged_once(ctx, tmp_path):
    kamailio_exe = need_program("kamailio")
    need_program("sipp")
    if not Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/acc_radius.so").exists():
        pytest.skip("kamailio-radius-modules is not installed")
    accounts, balances = seed(ctx)

    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0).start()
    relay = AccountingRelay(server.acct_port)
    sip_port, callee_port, caller_port = free_udp_port(), free_udp_port(), free_udp_port()
    radius_config = radius_files(tmp_path, server.auth_port, relay.port)
    kamailio_log = tmp_path / "kamailio.log"
    with open(kamailio_log, "w") as log_file:
        kamailio = subprocess.Popen(
            [kamailio_exe, "-DD", "-E", "-f", str(CONTRIB / "kamailio.cfg"),
             "-A", f"LISTEN=udp:127.0.0.1:{sip_port}",
             "-A", f'GATEWAY="sip:127.0.0.1:{callee_port}"',
             "-A", f'RADIUS_CONFIG="{radius_config}"', "-A", "CHILDREN=8"],
            stdout=log_file, stderr=subprocess.STDOUT)
    callee = None
    try:
        wait_for_port(sip_port, kamailio, kamailio_log)
        callee = subprocess.Popen(
            [need_program("sipp"), "-sf", str(SIPP_DATA / "uas_calls.xml"), "-i", "127.0.0.1",
             "-p", str(callee_port), "-nostdin", "-trace_err",
             "-error_file", str(tmp_path / "callee.err")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        plan = [planned(i) for i in range(CALLS)]
        injection = tmp_path / "calls.csv"
        injection.write_text("SEQUENTIAL\n" + "".join(
            f"{caller};{dialled};{seconds * 1000}\n" for caller, dialled, seconds, _ in plan))
        placed = sipp("uac_calls.xml", f"127.0.0.1:{sip_port}", "-p", str(caller_port),
                      "-inf", str(injection), "-m", str(CALLS), "-r", "40", "-l", "80",
                      "-timeout", "80s", "-trace_err", "-error_file", str(tmp_path / "caller.err"))
        assert placed.returncode == 0, (placed.stdout[-2000:] + _tail(tmp_path / "caller.err")
                                        + _tail(tmp_path / "callee.err"))

        # The debtor: Kamailio asks, abonent rejects, the caller gets 403.
        rejects_before = server.stats["auth_reject"]
        barred = tmp_path / "barred.csv"
        barred.write_text(f"SEQUENTIAL\n{DEBTOR};74952000777;2000\n"
                          f"{DEBTOR};79160000777;2000\n")
        refused = sipp("uac_calls.xml", f"127.0.0.1:{sip_port}", "-p", str(free_udp_port()),
                       "-inf", str(barred), "-m", "2", "-timeout", "20s",
                       "-trace_msg", "-message_file", str(tmp_path / "barred.msg"))
        assert refused.returncode == 0, refused.stdout[-3000:]
        answers = (tmp_path / "barred.msg").read_text()
        assert answers.count("SIP/2.0 403 Forbidden") == 2
        assert "SIP/2.0 200 OK" not in answers
        assert server.stats["auth_reject"] - rejects_before == 2

        # Every accounting request once more, from another port (so past
        # the duplicate cache): each is answered, and nothing changes.
        time.sleep(1.5)     # Kamailio's last retransmits are over
        replayer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        replayer.settimeout(5)
        replayed = list(relay.sent)
        answered = 0
        # In steps: a burst of answers would overflow the socket's buffer.
        for first in range(0, len(replayed), 40):
            step = replayed[first:first + 40]
            for data in step:
                replayer.sendto(data, ("127.0.0.1", server.acct_port))
            try:
                for _ in step:
                    replayer.recvfrom(4096)
                    answered += 1
            except socket.timeout:
                break
        replayer.close()
        assert answered == len(replayed), (server.drops, server.errors.counts, server.stats)
    finally:
        if callee is not None:
            stop(callee)
        stop(kamailio)
        relay.stop()
        server.stop()

    # The peers did what the test meant them to.
    assert relay.doubled > 50 and relay.held_back > 10 and relay.retransmits >= relay.held_back
    assert server.stats["acct_duplicates"] > 0

    with ctx.Session() as session:
        stored = session.scalars(select(Call).where(Call.source == "radius:kamailio")).all()
        assert session.scalar(select(VoiceStart.id)) is None    # every Start paired
        final = {number: session.get(Account, account_id).balance
                 for number, account_id in accounts.items()}
    assert len(stored) == CALLS
    spent = {number: Decimal("0.00") for number in CALLERS}
    for call in stored:
        index = int(call.external_id.split("-", 1)[0]) - 1   # sipp's [call_number]
        caller, dialled, seconds, disposition = plan[index]
        assert (call.calling, call.called, call.disposition) == (caller, dialled, disposition)
        if disposition == "answered":
            assert call.billsec == seconds, call.external_id
            assert call.charge == expected_charge(dialled, seconds), call.external_id
            spent[caller] += call.charge
        else:
            assert call.billsec == 0 and call.charge == Decimal("0.00")
            assert call.sip_code == (486 if disposition == "busy" else 480)
    assert sum(spent.values()) == sum(
        expected_charge(dialled, seconds) for _, dialled, seconds, disposition in plan
        if disposition == "answered")
    for number in CALLERS:
        assert final[number] == balances[number] - spent[number]
    with ctx.Session() as session:
        assert not session.scalars(select(Call).where(Call.calling == DEBTOR)).all()
