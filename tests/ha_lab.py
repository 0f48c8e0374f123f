"""A small lab of hosts on one machine, for the multi-node tests (issue 19).

- ``Lan``: a bridge in the test's own network namespace (the "database
  host", address .1) and network namespaces joined to it by veth pairs, one
  per node, each with its own address on the same /24. A node's link can be
  cut and restored (its bridge port set down and up): the node is then
  unreachable and cannot reach the database, as a host that lost its cable.
- ``PgPair``: a PostgreSQL primary and a synchronous streaming standby,
  two clusters in temporary directories on their own ports, made with
  Debian's PostgreSQL 15 programs run as the ``postgres`` user (they refuse
  to run as root).

Everything made here is removed by ``close()``, also after a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True,
                          timeout=timeout)


def namespaces_possible() -> str | None:
    """None if this process can make network namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = f"h19probe{os.getpid()}"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    return None


class Lan:
    def __init__(self, nodes: list[str]):
        tag = os.getpid() % 100000
        self.tag = tag
        # 10.19x.y.0/24, x.y from the pid: two runs at once do not collide.
        self.prefix = f"10.{190 + tag % 10}.{tag // 10 % 250}"
        self.bridge = f"h19b{tag}"
        self.host = f"{self.prefix}.1"
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self.ports: dict[str, str] = {}
        try:
            run("ip", "link", "add", self.bridge, "type", "bridge")
            run("ip", "addr", "add", f"{self.host}/24", "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
            for index, node in enumerate(nodes):
                self._add(node, index)
        except BaseException:
            self.close()
            raise

    def _add(self, node: str, index: int) -> None:
        namespace = f"h19-{self.tag}-{node}"
        port = f"h19v{self.tag}n{index}"
        address = f"{self.prefix}.{10 + index}"
        run("ip", "netns", "add", namespace)
        self.namespaces[node] = namespace
        run("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", namespace)
        self.ports[node] = port
        run("ip", "link", "set", port, "master", self.bridge, "up")
        run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", namespace, "link", "set", "eth0", "up")
        run("ip", "-n", namespace, "link", "set", "lo", "up")
        self.addresses[node] = address

    def exec_prefix(self, node: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[node]]

    def cut(self, node: str) -> None:
        run("ip", "link", "set", self.ports[node], "down")

    def restore(self, node: str) -> None:
        run("ip", "link", "set", self.ports[node], "up")

    def close(self) -> None:
        for port in self.ports.values():
            run("ip", "link", "del", port, check=False)
        for namespace in self.namespaces.values():
            run("ip", "netns", "del", namespace, check=False)
        run("ip", "link", "del", self.bridge, check=False)


class PgCluster:
    def __init__(self, root: Path, name: str, port: int):
        self.directory = root / name
        self.port = port
        self.log = root / f"{name}.log"

    def pg(self, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run("runuser", "-u", "postgres", "--", str(PG_BIN / program), *args,
                   timeout=timeout)

    def start(self) -> None:
        self.pg("pg_ctl", "-D", str(self.directory), "-l", str(self.log), "-w", "-t", "30",
                "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg("pg_ctl", "-D", str(self.directory), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.directory / "postmaster.pid").exists()

    def configure(self, **settings) -> None:
        with open(self.directory / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = '{value}'\n")


class PgPair:
    """Primary and synchronous standby on ``listen`` (and 127.0.0.1)."""

    STANDBY_NAME = "standby1"

    def __init__(self, ports: tuple[int, int], listen: str, clients: str):
        self.root = Path(tempfile.mkdtemp(prefix="abonent-pg-"))
        shutil.chown(self.root, "postgres", "postgres")
        self.primary = PgCluster(self.root, "primary", ports[0])
        self.standby = PgCluster(self.root, "standby", ports[1])
        self.listen = listen
        try:
            self.primary.pg("initdb", "-D", str(self.primary.directory), "-U", "postgres",
                            "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
            with open(self.primary.directory / "pg_hba.conf", "a", encoding="utf-8") as hba:
                hba.write(f"host all all {clients} trust\n")
                hba.write(f"host replication all {clients} trust\n")
            self.primary.configure(
                port=ports[0], listen_addresses=f"127.0.0.1,{listen}",
                unix_socket_directories=str(self.root), fsync="off",
                full_page_writes="off", shared_buffers="32MB", max_connections=80)
            self.primary.start()
        except BaseException:
            self.close()
            raise

    def url(self, database: str, *clusters: PgCluster, host: str | None = None,
            read_write: bool = True) -> str:
        """A SQLAlchemy URL naming the clusters in order (a libpq host list)."""
        host = host or self.listen
        hosts = "&".join(f"host={host}:{cluster.port}" for cluster in clusters)
        attrs = "&target_session_attrs=read-write" if read_write else ""
        return f"postgresql+psycopg://postgres@/{database}?{hosts}{attrs}"

    def add_standby(self) -> None:
        """pg_basebackup -R from the primary, start it, and make it the
        primary's synchronous standby; returns once the primary reports it
        ``sync`` (from then on a commit returns once the standby has it)."""
        self.primary.pg("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port),
                        "-U", "postgres", "-D", str(self.standby.directory), "-R",
                        "-X", "stream", "--checkpoint=fast", "--no-sync", timeout=120)
        self.standby.configure(
            port=self.standby.port,
            primary_conninfo=(f"host=127.0.0.1 port={self.primary.port} user=postgres "
                              f"application_name={self.STANDBY_NAME}"))
        self.standby.start()
        # Only now: a primary that waits for a synchronous standby not yet
        # there waits for ever on every commit.
        self.primary.configure(synchronous_standby_names=self.STANDBY_NAME)
        self.primary.pg("pg_ctl", "-D", str(self.primary.directory), "reload")
        deadline = time.monotonic() + 30
        while self.replication_state() != "sync":
            if time.monotonic() > deadline:
                raise AssertionError("the standby did not become synchronous in 30 s")
            time.sleep(0.1)

    def replication_state(self) -> str | None:
        found = run("runuser", "-u", "postgres", "--", str(PG_BIN / "psql"), "-h", "127.0.0.1",
                    "-p", str(self.primary.port), "-U", "postgres", "-At", "-c",
                    "SELECT sync_state FROM pg_stat_replication", check=False)
        return found.stdout.strip() or None

    def promote(self) -> None:
        self.standby.pg("pg_ctl", "-D", str(self.standby.directory), "-w", "-t", "30",
                        "promote")

    def close(self) -> None:
        for cluster in (self.standby, self.primary):
            if cluster.running():
                try:
                    cluster.stop("immediate")
                except (subprocess.SubprocessError, OSError):
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
