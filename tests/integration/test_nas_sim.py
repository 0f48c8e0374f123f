"""The NAS simulator against the real servers: RADIUS auth and accounting,
NetFlow into the collector, and a throttle CoA that changes its speed."""

import time

from sqlalchemy import func, select

from aaa import enforcement
from aaa.models import Service, Session as RadiusSession
from aaa.server import RadiusServer
from collector.models import TrafficRollup
from collector.server import CollectorServer
from rating import fees, ledger
from scripts.nas_sim import NasSimulator
from tests.conftest import free_udp_port
from tests.factories import make_account, make_nas, make_tariff
from tests.integration.test_enforcement import FAST


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_simulated_bras_end_to_end(ctx):
    coa_port = free_udp_port()
    with ctx.Session() as session:
        tariff = make_tariff(session, rate_down_kbps=8_000, rate_up_kbps=4_000,
                             negative_rate_kbps=256)
        account = make_account(session, tariff=tariff.name, balance="10", credit_limit="50")
        session.add(Service(account_id=account.id, kind="pppoe", login="sim1",
                            password="sim-pass", static_ipv4="10.20.0.7"))
        make_nas(session, vendor="mikrotik", secret="sim-secret", coa_port=coa_port)
        session.commit()
        account_id = account.id
    radius = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    radius.start()
    collector = CollectorServer(ctx, host="127.0.0.1", port=0)
    collector.start()
    sim = NasSimulator([("sim1", "sim-pass"), ("sim1", "wrong")], secret="sim-secret",
                       auth_port=radius.auth_port, acct_port=radius.acct_port,
                       coa_port=coa_port, collector=("127.0.0.1", collector.port),
                       interim_s=0.3)
    try:
        sim.start()
        assert len(sim.sessions) == 1  # the wrong password was rejected
        live = next(iter(sim.sessions.values()))
        assert (live.down_kbps, live.up_kbps, live.framed_ip) == (8000, 4000, "10.20.0.7")

        def stored():
            with ctx.Session() as session:
                return session.scalars(select(RadiusSession)).all()
        assert wait_for(lambda: any(s.octets_in > 0 for s in stored()))
        # Balance below zero: the ladder throttles, CoA reaches the simulator.
        with ctx.Session() as session:
            ledger.post(session, account_id=account_id, amount="-20", kind="traffic",
                        key="t", author="t")
            fees.apply_policies(session)
            session.commit()
        enforcement.run_once(ctx.Session, timers=FAST)
        assert wait_for(lambda: (live.down_kbps, live.up_kbps) == (256, 256))
        collector.wait_idle()
        collector.flush()
        with ctx.Session() as session:
            netflow_bytes = session.scalar(select(func.sum(TrafficRollup.bytes)).where(
                TrafficRollup.account_id == account_id, TrafficRollup.direction == "in"))
        assert netflow_bytes and netflow_bytes > 0
    finally:
        sim.stop()
        collector.stop()
        radius.stop()
    sessions = stored()
    assert len(sessions) == 1 and sessions[0].stopped_at is not None
    assert sessions[0].terminate_cause == "NAS-Reboot"
    # RADIUS's view: Acct-Input is what the NAS received from the subscriber.
    assert (sessions[0].octets_in, sessions[0].octets_out) == (live.octets_out, live.octets_in)


def test_exports_fail_over_to_the_next_collector_and_replay_the_last_datagrams():
    """The first collector's port is closed (ICMP port unreachable): the
    NAS moves to the second and sends its last datagrams again there, so
    the second gets every datagram, the one the first missed included."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        gone = closed.getsockname()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
        second.bind(("127.0.0.1", 0))
        address = second.getsockname()
        second.settimeout(2.0)
        sim = NasSimulator([], secret="s", coa_port=0,
                           collector=[gone, address], export_replay=4)
        flows = [("198.51.100.10", f"10.20.0.{n % 250 + 1}", 1000 + n) for n in range(90)]
        sim._send_netflow(flows)        # 3 datagrams: the first is lost, found out
        sim._send_netflow(flows[:30])   # on the second send, or here at the latest
        received = []
        while len(received) < 4:
            received.append(second.recv(65535))
        sim.stop_exports()
    assert sim.collector == address
    assert [c for c, _ in sim.export_failovers] == ["127.0.0.1"]
    assert sim.exported["datagrams"] == 4 and sim.exported["lost"] == 0
    # Every datagram reached the second collector, in order; copies of
    # what the first might have had too (it had nothing: its port was shut).
    sequences = [int.from_bytes(d[16:20], "big") for d in received]
    assert sequences == [0, 30, 60, 90]
