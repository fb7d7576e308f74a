"""A real Redis Cluster for the tests: 3 masters + 3 replicas on free loopback ports.

:func:`redis_cluster` (fixture, one per test module) starts six ``redis-server
--cluster-enabled yes`` processes, joins them with ``redis-cli --cluster create ...
--cluster-replicas 1 --cluster-yes``, waits for ``cluster_state:ok`` on every node,
and kills every process when the module's tests are done. Skipped, with the reason,
when ``redis-server`` or ``redis-cli`` is missing, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from tests.ports import bindable
from tests.redis_support import _unavailable

#: Seconds a node may take to be declared failed (a failover takes about twice that).
NODE_TIMEOUT_MS = 1000


#: Where the nodes' ports are picked: they and their bus ports (10000 higher) stay
#: below Linux's ephemeral range (32768-60999), so no client socket takes one between
#: the pick and the node's bind, and apart from ``tests.ports.PICKED_PORTS``.
CLUSTER_PORTS = range(20000, 22768)


def cluster_port(taken: frozenset[int] = frozenset()) -> int:
    """A free loopback port in :data:`CLUSTER_PORTS` whose cluster bus port (10000
    higher) is free too, neither of them in ``taken``."""
    while True:
        port = random.randrange(CLUSTER_PORTS.start, CLUSTER_PORTS.stop)
        if {port, port + 10000} & taken:
            continue
        if bindable(port) and bindable(port + 10000):
            return port


def cluster_ports(count: int) -> list[int]:
    """``count`` ports for the nodes of one cluster (see :func:`cluster_port`): no two
    alike, and none equal to another node's bus port."""
    ports: list[int] = []
    for _ in range(count):
        ports.append(cluster_port(frozenset(ports) | {p + 10000 for p in ports}))
    return ports


@dataclass
class Node:
    """One ``redis-server`` of the cluster."""

    port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=timeout, socket_timeout=timeout)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _unavailable("redis-server is not installed (needed for the Redis Cluster tests)")
        assert binary is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        argv += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(self.directory)]
        # A replica may always take over (the default refuses one whose link to its
        # master was down for 10 node timeouts: 10 s here).
        argv += ["--cluster-replica-validity-factor", "0"]
        argv += ["--appendonly", "no", "--save", "", "--daemonize", "no"]
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class Cluster:
    """A running Redis Cluster of the tests (see the module docstring)."""

    nodes: list[Node]
    killed: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A URL of one node with ``?cluster=true``: what ``RedisStore(url=...)`` takes."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0?cluster=true"

    @property
    def startup_nodes(self) -> list[str]:
        return [node.name for node in self.nodes]

    def cluster_client(self) -> redis.RedisCluster:
        alive = next(node for node in self.nodes if node.alive())
        return redis.RedisCluster(host="127.0.0.1", port=alive.port)

    def slots(self) -> dict[int, str]:
        """The master (``host:port``) of every slot now, from a live node."""
        for node in self.nodes:
            if not node.alive():
                continue
            client = node.client()
            try:
                ranges = client.execute_command("CLUSTER", "SLOTS")
            except redis.RedisError:
                continue
            finally:
                client.close()
            owners = {}
            for start, end, master, *_ in ranges:
                name = f"{master[0].decode()}:{master[1]}"
                for slot in range(int(start), int(end) + 1):
                    owners[slot] = name
            return owners
        raise AssertionError("no node of the cluster answers")

    def master_of(self, key: str) -> str:
        return self.slots()[key_slot(key.encode())]

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def masters(self) -> list[str]:
        return sorted(set(self.slots().values()))

    def keys_on_masters(self, prefix: str, count: int = 3) -> list[str]:
        """``count`` channel names starting with ``prefix``, each on another master."""
        owners = self.slots()
        found: dict[str, str] = {}
        n = 0
        while len(found) < count:
            key = f"{prefix}{n}"
            found.setdefault(owners[key_slot(key.encode())], key)
            n += 1
        return list(found.values())

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node says ``cluster_state:ok`` and agrees on the masters."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.nodes:
                if not node.alive():
                    continue
                client = node.client(1.0)
                try:
                    info = client.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    states.append("cluster_state:ok" in text)
                except redis.RedisError:
                    states.append(False)
                finally:
                    client.close()
            if states and all(states):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the Redis Cluster is not ok after {timeout} s: {states}")
            time.sleep(0.1)

    def replica_of(self, master: str) -> Node:
        """A live replica of ``master``."""
        client = self.node(master).client()
        try:
            lines = client.execute_command("CLUSTER", "NODES").decode().splitlines()
        finally:
            client.close()
        ids = {line.split()[1].split("@")[0]: line.split()[0] for line in lines}
        master_id = ids[master]
        for line in lines:
            parts = line.split()
            if "slave" in parts[2] and parts[3] == master_id:
                node = self.node(parts[1].split("@")[0])
                if node.alive():
                    return node
        raise AssertionError(f"no live replica of {master}")

    def fail_over(self, master: str, timeout: float = 20.0) -> str:
        """Kill ``master`` and wait until its replica was promoted; the new master."""
        replica = self.replica_of(master)
        self.node(master).kill()
        self.killed.append(self.node(master))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            client = replica.client(1.0)
            try:
                role = client.execute_command("ROLE")[0]
            except redis.RedisError:
                role = b"?"
            finally:
                client.close()
            if role == b"master":
                self.wait_ok(timeout)
                return replica.name
            time.sleep(0.05)
        pytest.fail(f"no replica of {master} was promoted within {timeout} s")

    def hold_back_replica(self, master: str) -> Node:
        """Cut ``master``'s replica off (its link killed, and it cannot log in again:
        a wrong ``masterauth``), so that what ``master`` acknowledges from now on is
        not replicated; returns the replica. Its promotion then loses those writes."""
        replica = self.replica_of(master)
        link = replica.client()
        try:
            link.config_set("masterauth", "not-the-password")
        finally:
            link.close()
        client = self.node(master).client()
        try:
            client.execute_command("CLIENT", "KILL", "TYPE", "replica")
        finally:
            client.close()
        return replica

    def migrate_slot(self, slot: int, target: str) -> None:
        """Move ``slot`` (and its keys) to master ``target``, as ``redis-cli --cluster
        reshard`` does: IMPORTING/MIGRATING, MIGRATE in batches, then SETSLOT NODE."""
        self.start_migration(slot, target)
        self.finish_migration(slot, target)

    def start_migration(self, slot: int, target: str) -> None:
        """The first half of :meth:`migrate_slot`: ``slot`` IMPORTING on ``target`` and
        MIGRATING on its master, its keys MIGRATEd to ``target``. The map still names
        the source, which answers ``ASK`` for those keys until :meth:`finish_migration`."""
        source = self.slots()[slot]
        ids = self._node_ids()
        src, dst = self.node(source).client(), self.node(target).client()
        try:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
            while True:
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10)
                if not keys:
                    break
                src.execute_command(
                    "MIGRATE", "127.0.0.1", self.node(target).port, "", 0, 5000, "KEYS", *keys
                )
        finally:
            src.close()
            dst.close()

    def finish_migration(self, slot: int, target: str) -> None:
        """``CLUSTER SETSLOT slot NODE target`` on every master: the slot moved."""
        ids = self._node_ids()
        for name in self.masters():
            client = self.node(name).client()
            try:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
            finally:
                client.close()

    def _node_ids(self) -> dict[str, str]:
        alive = next(node for node in self.nodes if node.alive())
        client = alive.client()
        try:
            lines = client.execute_command("CLUSTER", "NODES").decode().splitlines()
        finally:
            client.close()
        return {line.split()[1].split("@")[0]: line.split()[0] for line in lines}


def start_cluster(directory: Path) -> Cluster:
    """Start six nodes and join them as 3 masters + 3 replicas (see the module docstring)."""
    cli = shutil.which("redis-cli")
    if cli is None:
        _unavailable("redis-cli is not installed (needed to create the Redis Cluster)")
    assert cli is not None
    nodes = [Node(port, directory / f"node-{n}") for n, port in enumerate(cluster_ports(6))]
    cluster = Cluster(nodes)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            deadline = time.monotonic() + 10
            while True:
                client = node.client(0.2)
                try:
                    if client.ping():
                        break
                except redis.RedisError:
                    if not node.alive() or time.monotonic() > deadline:
                        pytest.fail(f"redis-server on port {node.port} did not start")
                    time.sleep(0.02)
                finally:
                    client.close()
        created = subprocess.run(
            [
                *(cli, "--cluster", "create", *(node.name for node in nodes)),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed: {created.stdout!r} {created.stderr!r}")
        cluster.wait_ok()
        # Every replica attached and synced (a failover needs one; a test that wants
        # a replica behind makes it so: Cluster.hold_back_replica).
        deadline = time.monotonic() + 30
        while len({n for n in cluster.slots().values()}) != 3 or not _replicas_synced(cluster):
            if time.monotonic() > deadline:
                pytest.fail("the Redis Cluster's replicas did not sync within 30 s")
            time.sleep(0.1)
    except BaseException:
        for node in nodes:
            node.kill()
        raise
    return cluster


def _replicas_synced(cluster: Cluster) -> bool:
    """Whether every master has a replica that finished its sync and has every write
    the master has (see :func:`replica_synced`): a failover then loses nothing."""
    return all(replica_synced(cluster, name) for name in cluster.masters())


def replica_synced(cluster: Cluster, master: str) -> bool:
    """Whether a replica of ``master`` has its link up (``master_link_status:up``,
    state ``online``) and has applied every write ``master`` has: a probe key written
    to ``master`` now is read on the replica, and its replication offset is the
    master's. (A replica can say its link is up while nothing flows yet.)"""
    owners = cluster.slots()
    probe = next(
        key
        for key in (f"sync-probe-{n}" for n in range(100_000))
        if owners[key_slot(key.encode())] == master
    )
    client = cluster.node(master).client()
    try:
        client.set(probe, "1")
        info = client.info("replication")
    finally:
        client.close()
    offset = int(info.get("master_repl_offset", -1))
    for n in range(int(info.get("connected_slaves", 0))):
        replica = info.get(f"slave{n}")
        if not isinstance(replica, dict) or replica.get("state") != "online":
            continue
        link = cluster.node(f"{replica['ip']}:{replica['port']}").client()
        try:
            link.execute_command("READONLY")
            state = link.info("replication")
            if (
                state.get("master_link_status") == "up"
                and int(state.get("slave_repl_offset", -2)) >= offset
                and link.get(probe) == b"1"
            ):
                return True
        finally:
            link.close()
    return False


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Redis Cluster of the module's own (3 masters + 3 replicas); killed afterwards."""
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        for node in cluster.nodes:
            node.kill()
