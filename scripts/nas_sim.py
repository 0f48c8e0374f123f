"""``abonent nas-sim``: a BRAS in a box, for demos and load.

It authenticates subscribers against the RADIUS server (PAP), opens a
session for each Access-Accept with the speed the reply gave
(Mikrotik-Rate-Limit), sends Accounting Start, Interim-Update every
interval with counters that grow at a share of that speed, and NetFlow v5
for the same bytes to the collector; it answers CoA and Disconnect
(aaa.simulator.CoaResponder: ACK, or NAK/loss at configured rates) and
applies the speed it is told. Everything goes to loopback unless told
otherwise; every loop is bounded by ``duration``.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass

import click

from aaa import client
from aaa import packet as wire
from aaa.simulator import CoaResponder

log = logging.getLogger(__name__)

MIKROTIK = 14988
MIKROTIK_RATE_LIMIT = 8
FRAMED_IP_ADDRESS = 8
CLASS = 25
V5_HEADER = struct.Struct(">HHIIIIBBH")
V5_RECORD = struct.Struct(">IIIHHIIIIHHBBBBHHBBH")
INTERNET_PEER = "198.51.100.10"  # TEST-NET-2: documentation range


@dataclass
class SimSession:
    login: str
    acct_session_id: str
    framed_ip: str | None
    down_kbps: int
    up_kbps: int
    octets_in: int = 0
    octets_out: int = 0
    started: float = 0.0
    # The Access-Accept's Class, echoed in accounting (RFC 2865 §5.25).
    classes: tuple[bytes, ...] = ()


def parse_rate(value: bytes) -> tuple[int, int] | None:
    """Mikrotik-Rate-Limit "rx/tx" = "up/down" (k = kbit/s) -> (down, up)."""
    try:
        first = value.decode().split()[0]
        up, down = first.split("/")
        return int(down.rstrip("kK")), int(up.rstrip("kK"))
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


class NasSimulator:
    def __init__(self, subscribers: list[tuple[str, str]], *, secret: str,
                 radius_host: str = "127.0.0.1", auth_port: int = 1812, acct_port: int = 1813,
                 coa_port: int = 3799,
                 collector: tuple[str, int] | list[tuple[str, int]] | None = None,
                 interim_s: float = 10.0, load: float = 0.3, drop_rate: float = 0.0,
                 nak_rate: float = 0.0, seed: int = 1, servers: list[str] | None = None,
                 timeout_s: float = 2.0, dead_time_s: float = 10.0, export_replay: int = 0):
        self.subscribers = subscribers
        self.secret = secret.encode()
        # RADIUS servers in order of preference, as a NAS is configured
        # with them: requests go to the first one that is not marked dead;
        # one that leaves a request unanswered is dead for ``dead_time_s``,
        # then preferred again (fail over, and back).
        self.servers = list(servers) if servers else [radius_host]
        self.auth_port, self.acct_port = auth_port, acct_port
        self.auth = (self.servers[0], auth_port)
        self.acct = (self.servers[0], acct_port)
        self.timeout_s = timeout_s
        self.dead_time_s = dead_time_s
        self._dead_until = [0.0] * len(self.servers)
        # What the servers acknowledged: per session the last counters an
        # Accounting-Response confirmed, and every answer by server
        # (server, time.time()) for the record of who answered when.
        self.acked: dict[str, dict] = {}
        self.answers: list[tuple[str, float]] = []
        # NetFlow collectors in order of preference, as an exporter with a
        # backup destination is configured: datagrams go to one until the
        # kernel reports it unreachable (ICMP port/host unreachable, or no
        # ARP answer, on the connected socket), then to the next, for good
        # (no failback: each move may cost a replay). At the move the last
        # ``export_replay`` datagrams are sent again to the new one: the
        # exporter cannot know which of them the old one received before it
        # went away, so it errs on the side of a copy (the collectors skip
        # a packet another one counted: collector.failover_hold_seconds).
        if isinstance(collector, tuple):
            collector = [collector]
        self.collectors = list(collector or [])
        self.collector = self.collectors[0] if self.collectors else None
        self.export_replay = export_replay
        self._recent_exports: deque[bytes] = deque(maxlen=max(1, export_replay))
        self._export_index = 0
        self._export_sock: socket.socket | None = None
        self.export_failovers: list[tuple[str, float]] = []     # (new collector, time)
        self.exported = {"datagrams": 0, "replayed": 0, "lost": 0}
        self.interim_s = interim_s
        self.load = load
        self.rng = random.Random(seed)
        self.sessions: dict[str, SimSession] = {}
        self.responder = CoaResponder(secret=self.secret, port=coa_port, drop_rate=drop_rate,
                                      seed=seed)
        self.nak_rate = nak_rate
        self._identifier = 0
        self._flow_sequence = 0
        self._stop = threading.Event()
        self._boot = time.time()

    # -- RADIUS -----------------------------------------------------------
    def _next_id(self) -> int:
        self._identifier = (self._identifier + 1) % 256
        return self._identifier

    def _server(self) -> int:
        """The preferred server not marked dead (the first, if all are)."""
        now = time.monotonic()
        for index, until in enumerate(self._dead_until):
            if until <= now:
                return index
        return min(range(len(self.servers)), key=self._dead_until.__getitem__)

    def _ask(self, make_request, port: int, tries: int) -> bytes | None:
        """Send to the preferred server; on no answer mark it dead and go on
        to the next (a new request each server: a new Identifier, as a NAS
        does). The valid reply, or None after ``tries`` unanswered."""
        for _ in range(tries):
            index = self._server()
            request = make_request()
            try:
                reply = client.exchange(request, (self.servers[index], port),
                                        timeout=self.timeout_s)
            except OSError:     # no route to that server (its link is down)
                reply = None
                time.sleep(min(self.timeout_s, 0.2))
            if reply is not None and client.reply_valid(reply, request, self.secret):
                self.answers.append((self.servers[index], time.time()))
                return reply
            if len(self.servers) > 1:
                self._dead_until[index] = time.monotonic() + self.dead_time_s
                log.warning("nas-sim.server-dead server=%s", self.servers[index])
        return None

    def login(self, login: str, password: str) -> SimSession | None:
        reply = self._ask(lambda: client.access_request(self.secret, self._next_id(), login,
                                                        password),
                          self.auth_port, tries=max(3, 2 * len(self.servers)))
        if reply is None:
            log.warning("nas-sim.auth-timeout login=%s", login)
            return None
        answer = wire.decode(reply)
        if answer.code != wire.ACCESS_ACCEPT:
            log.info("nas-sim.rejected login=%s", login)
            return None
        rate = None
        for value in answer.vendor.get((MIKROTIK, MIKROTIK_RATE_LIMIT), []):
            rate = parse_rate(value)
        address = answer.first(FRAMED_IP_ADDRESS)
        session = SimSession(login=login, acct_session_id=f"sim-{login}-{int(time.time())}",
                             framed_ip=str(ipaddress.IPv4Address(address)) if address else None,
                             down_kbps=rate[0] if rate else 1000,
                             up_kbps=rate[1] if rate else 1000, started=time.time(),
                             classes=tuple(answer.attributes.get(CLASS, ())))
        self.sessions[session.acct_session_id] = session
        if self.rng.random() < self.nak_rate:
            self.responder.nak_sessions.add(session.acct_session_id)
        self._accounting(session, "Start")
        return session

    def _accounting(self, session: SimSession, status: str, cause: str | None = None,
                    tries: int = 3) -> bool:
        pairs = [("User-Name", session.login), ("Acct-Status-Type", status),
                 ("Acct-Session-Id", session.acct_session_id),
                 ("NAS-Port-Type", "Virtual"),
                 ("Acct-Session-Time", int(time.time() - session.started)),
                 ("Acct-Input-Octets", session.octets_out % 2 ** 32),
                 ("Acct-Input-Gigawords", session.octets_out >> 32),
                 ("Acct-Output-Octets", session.octets_in % 2 ** 32),
                 ("Acct-Output-Gigawords", session.octets_in >> 32)]
        if session.framed_ip:
            pairs.append(("Framed-IP-Address", session.framed_ip))
        pairs.extend(("Class", value) for value in session.classes)
        if cause:
            pairs.append(("Acct-Terminate-Cause", cause))
        reply = self._ask(lambda: client.accounting_request(self.secret, self._next_id(), pairs),
                          self.acct_port, tries)
        if reply is not None:
            self.acked[session.acct_session_id] = {
                # As the server stores them: Acct-Input is what the NAS
                # received from the subscriber (its upload).
                "login": session.login, "status": status,
                "acct_input_octets": session.octets_out,
                "acct_output_octets": session.octets_in}
            return True
        log.warning("nas-sim.acct-unanswered session=%s status=%s", session.acct_session_id,
                    status)
        return False

    # -- CoA: the responder records what it was told; the speed follows ----
    def _apply_coa(self) -> None:
        for session_id in list(self.responder.disconnected):
            session = self.sessions.pop(session_id, None)
            if session is not None:
                self._accounting(session, "Stop", "Admin-Reset")
        self.responder.disconnected.clear()
        for session_id, attributes in list(self.responder.applied.items()):
            session = self.sessions.get(session_id)
            if session is None:
                continue
            for value in attributes.get(wire.VENDOR_SPECIFIC, []):
                # Vendor-Specific: vendor id (4), type (1), length (1), value.
                if len(value) > 6 and int.from_bytes(value[:4], "big") == MIKROTIK \
                        and value[4] == MIKROTIK_RATE_LIMIT:
                    rate = parse_rate(value[6:])
                    if rate and (session.down_kbps, session.up_kbps) != rate:
                        session.down_kbps, session.up_kbps = rate
                        log.info("nas-sim.speed session=%s down_kbps=%d up_kbps=%d",
                                 session_id, rate[0], rate[1])

    # -- traffic ----------------------------------------------------------
    def _tick(self, seconds: float) -> None:
        flows = []
        for session in self.sessions.values():
            share = self.load * self.rng.uniform(0.5, 1.5)
            down = int(session.down_kbps * 1000 / 8 * seconds * share)
            up = int(session.up_kbps * 1000 / 8 * seconds * share / 4)
            session.octets_in += down
            session.octets_out += up
            if session.framed_ip:
                flows.append((INTERNET_PEER, session.framed_ip, down))
                flows.append((session.framed_ip, INTERNET_PEER, up))
        if self.collector and flows:
            self._send_netflow(flows)

    def _send_netflow(self, flows) -> None:
        uptime_ms = int((time.time() - self._boot) * 1000) % 2 ** 32
        for start in range(0, len(flows), 30):  # v5 carries at most 30 records
            batch = flows[start:start + 30]
            header = V5_HEADER.pack(5, len(batch), uptime_ms, int(time.time()), 0,
                                    self._flow_sequence, 0, 0, 0)
            self._flow_sequence = (self._flow_sequence + len(batch)) % 2 ** 32
            body = b"".join(V5_RECORD.pack(
                int(ipaddress.IPv4Address(src)), int(ipaddress.IPv4Address(dst)), 0, 0, 0,
                max(1, volume // 1200), volume % 2 ** 32, uptime_ms, uptime_ms, 443, 50000,
                0, 0, 6, 0, 0, 0, 0, 0, 0) for src, dst, volume in batch)
            self._export(header + body)

    def _export(self, datagram: bytes) -> None:
        """Send one export datagram, failing over to the next collector when
        the kernel says the current one is unreachable."""
        self._recent_exports.append(datagram)
        self.exported["datagrams"] += 1
        while True:
            try:
                self._export_socket().send(datagram)
                return
            except OSError as error:
                if not self._export_failover(error):
                    # No other collector: the error was an earlier
                    # datagram's; this one goes on a fresh socket.
                    try:
                        self._export_socket().send(datagram)
                    except OSError:
                        self.exported["lost"] += 1
                    return
                # The recent datagrams to the new collector, this one too.
                if self.export_replay and self._replay():
                    return

    def _export_socket(self) -> socket.socket:
        if self._export_sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # Connected, so that ICMP unreachable comes back as an error on
            # a later send; IP_RECVERR so that host unreachable does too
            # (Linux reports only port unreachable otherwise), which is
            # what a failed ARP lookup for the collector gives.
            if len(self.collectors) > 1:
                sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11), 1)
            sock.connect(self.collectors[self._export_index])
            self._export_sock = sock
        return self._export_sock

    def _export_failover(self, error: OSError) -> bool:
        """Move to the next collector; False if there is none."""
        if self._export_sock is not None:
            self._export_sock.close()
            self._export_sock = None
        if self._export_index + 1 >= len(self.collectors):
            log.debug("nas-sim.export-failed collector=%s error=%s",
                      self.collectors[self._export_index], error.strerror)
            return False
        self._export_index += 1
        self.collector = self.collectors[self._export_index]
        self.export_failovers.append((self.collector[0], time.time()))
        log.warning("nas-sim.export-failover collector=%s:%d error=%s replay=%d",
                    self.collector[0], self.collector[1], error.strerror,
                    len(self._recent_exports) if self.export_replay else 0)
        return True

    def _replay(self) -> bool:
        """Send the recent datagrams again (to a collector just moved to);
        False if it failed on the way (the caller moves on)."""
        sock = self._export_socket()
        for datagram in self._recent_exports:
            try:
                sock.send(datagram)
            except OSError:
                return False
            self.exported["replayed"] += 1
        return True

    # -- life cycle -------------------------------------------------------
    def start(self, responder_started: bool = False) -> "NasSimulator":
        if not responder_started:
            self.responder.start()
        for login, password in self.subscribers:
            self.login(login, password)
        self._thread = threading.Thread(target=self._run, name="nas-sim", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(min(1.0, self.interim_s)):
            self._apply_coa()
            now = time.monotonic()
            if now - last >= self.interim_s:
                self._tick(now - last)
                for session in list(self.sessions.values()):
                    self._accounting(session, "Interim-Update")
                last = now

    def stop(self, stop_tries: int = 3) -> None:
        self._stop.set()
        self._thread.join(10)
        for session in list(self.sessions.values()):
            self._accounting(session, "Stop", "NAS-Reboot", tries=stop_tries)
        self.sessions.clear()
        self.responder.stop()
        self.stop_exports()

    def stop_exports(self) -> None:
        if self._export_sock is not None:
            self._export_sock.close()
            self._export_sock = None

    def report(self) -> dict:
        """What the servers acknowledged, for comparing with what they stored."""
        answered: dict[str, int] = {}
        for server, _ in self.answers:
            answered[server] = answered.get(server, 0) + 1
        return {"sessions": self.acked, "answered_by": answered,
                "answers": [[server, at] for server, at in self.answers],
                "exported": dict(self.exported),
                "export_failovers": [[c, at] for c, at in self.export_failovers]}


@click.command("nas-sim")
@click.option("--user", "users", multiple=True, required=True,
              help="LOGIN:PASSWORD of a subscriber to bring online (repeatable).")
@click.option("--secret", required=True, help="The NAS's RADIUS shared secret.")
@click.option("--radius", "radius", multiple=True, default=("127.0.0.1",), show_default=True,
              help="RADIUS server host; repeat for the servers to fail over to, in order.")
@click.option("--auth-port", type=click.IntRange(1, 65535), default=1812, show_default=True)
@click.option("--acct-port", type=click.IntRange(1, 65535), default=1813, show_default=True)
@click.option("--coa-port", type=click.IntRange(0, 65535), default=3799, show_default=True)
@click.option("--collector", "collectors", multiple=True,
              help="HOST:PORT to send NetFlow v5 to; repeat for the collectors to fail "
                   "over to, in order (on ICMP unreachable or no ARP answer).")
@click.option("--export-replay", type=click.IntRange(0, 4096), default=0, show_default=True,
              help="At a collector failover, send the last this many export datagrams "
                   "again to the new collector.")
@click.option("--interim", type=click.FloatRange(0.1), default=10.0, show_default=True)
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of CoA requests not answered.")
@click.option("--nak-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of sessions whose CoA requests are NAKed.")
@click.option("--duration", type=click.FloatRange(0.1), default=3600.0, show_default=True,
              help="Stop after this many seconds.")
@click.option("--timeout", type=click.FloatRange(0.05, 30), default=2.0, show_default=True,
              help="Seconds to wait for a RADIUS answer before trying the next server.")
@click.option("--dead-time", type=click.FloatRange(0, 3600), default=10.0, show_default=True,
              help="Seconds a server that did not answer is passed over.")
@click.option("--stop-tries", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Attempts for each session's final Accounting Stop.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write what the servers acknowledged to this JSON file at the end.")
def nas_sim(users, secret, radius, auth_port, acct_port, coa_port, collectors, export_replay,
            interim, drop_rate, nak_rate, duration, timeout, dead_time, stop_tries,
            report_path):
    """Simulate a BRAS: auth, accounting, NetFlow, and CoA answers."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    subscribers = []
    for user in users:
        login, _, password = user.partition(":")
        if not login or not password:
            raise click.BadParameter(f"{user!r} is not LOGIN:PASSWORD", param_hint="--user")
        subscribers.append((login, password))
    targets = []
    for collector in collectors:
        host, _, port = collector.rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter(f"{collector!r} is not HOST:PORT", param_hint="--collector")
        targets.append((host, int(port)))
    sim = NasSimulator(subscribers, secret=secret, servers=list(radius), auth_port=auth_port,
                       acct_port=acct_port, coa_port=coa_port, collector=targets,
                       interim_s=interim, drop_rate=drop_rate, nak_rate=nak_rate,
                       timeout_s=timeout, dead_time_s=dead_time,
                       export_replay=export_replay).start()
    click.echo(f"nas-sim: {len(sim.sessions)} of {len(subscribers)} sessions up; CoA on "
               f"port {sim.responder.port}; Ctrl-C to stop")
    try:
        time.sleep(duration)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop(stop_tries)
        if report_path:
            import json
            with open(report_path, "w", encoding="utf-8") as out:
                json.dump(sim.report(), out)
