"""A real Redis Cluster for the tests: 3 masters with a replica each, on loopback.

`RedisCluster` starts six of Debian's ``redis-server`` in cluster mode, each in
its own directory (``nodes.conf``, logs) on a free port, joins them with
``redis-cli --cluster create ... --cluster-replicas 1`` and waits for
``cluster_state:ok`` and every node agreeing on the slots (a few seconds).
``cluster-node-timeout`` is short (1 s), so that a killed master is failed
over within a few seconds: the failover tests measure that window.  As in
tests/redis_server.py, ``KEYS`` and ``FLUSHALL`` are renamed away and
``FLUSHDB`` is renamed to the fixture's own name.

`RedisClusterCase` is a mixin: one cluster per test class, started in
``setUpClass``, every master flushed before each test, stopped at class
clean-up even when a test fails.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import ClassVar

import redis
from redis.cluster import RedisCluster as BlockingCluster

from tests.redis_server import FLUSHDB

#: Milliseconds before a silent node is failed (Redis's default is 15,000).
NODE_TIMEOUT_MS = 1000


def cluster_port() -> int:
    """A free port P for a node, with P + 10000 (its cluster bus) free too.

    Redis refuses a port above 55535, since the bus port would not fit.
    """
    while True:
        port = random.randrange(20000, 45000)
        if all(_free(candidate) for candidate in (port, port + 10000)):
            return port


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisCluster:
    """Six redis-server processes joined as one cluster of 3 masters and 3 replicas."""

    size = 6

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="tornado-session-cluster-")
        self.ports: list[int] = []
        while len(self.ports) < self.size:
            port = cluster_port()
            if port not in self.ports:
                self.ports.append(port)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """A URL of one node: a cluster client finds the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node_dir(self, port: int) -> str:
        return os.path.join(self.directory, str(port))

    def start_node(self, port: int) -> None:
        """Start (or restart, with its nodes.conf) the node on ``port``."""
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: run scripts/test.sh (setup_redis_server)"
        os.makedirs(self.node_dir(port), exist_ok=True)
        args = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", self.node_dir(port),
            "--logfile", "redis.log",
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "no",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--rename-command", "KEYS", "",
            "--rename-command", "FLUSHALL", "",
            "--rename-command", "FLUSHDB", FLUSHDB,
        ]
        self.processes[port] = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        self._wait(lambda: self.admin(port).ping(), f"node {port} did not answer PING")

    def start(self) -> None:
        """Start the six nodes, create the cluster and wait until it serves every slot."""
        try:
            self._create()
        except BaseException:
            self.stop()
            raise

    def _create(self) -> None:
        for port in self.ports:
            self.start_node(port)
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1",
             "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=60,
        )
        self.wait_ok()

    def wait_ok(self, timeout: float = 30) -> None:
        """Wait until every running node says ``cluster_state:ok`` and sees 3 masters.

        And every replica's link to its master is up: a replica that has not
        synced yet would not take over from a master killed now.
        """

        def healthy() -> bool:
            for port in self.processes:
                info = self.cluster_info(port)
                if info["cluster_state"] != "ok" or info["cluster_size"] != "3":
                    return False
                with self.admin(port) as client:
                    replication = client.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
            return True

        self._wait(healthy, "the cluster did not reach cluster_state:ok", timeout)

    def masters(self) -> list[int]:
        """The ports of the masters now serving slots (as the first live node sees it)."""
        for port in self.processes:
            try:
                with self.admin(port) as client:
                    text = client.execute_command("CLUSTER", "NODES")
            except redis.exceptions.RedisError:
                continue
            masters = []
            for line in (text.decode() if isinstance(text, bytes) else text).splitlines():
                fields = line.split()
                flags = fields[2].split(",")
                if "master" in flags and "fail" not in flags and len(fields) > 8:
                    masters.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
            return sorted(masters)
        raise RuntimeError("no node of the cluster answers")

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot."""
        with BlockingCluster(host="127.0.0.1", port=next(iter(self.processes))) as client:
            node = client.get_node_from_key(key)
            return int(node.port)

    def cluster_info(self, port: int) -> dict[str, str]:
        """``CLUSTER INFO`` of one node, as text fields."""
        with self.admin(port) as client:
            text = client.execute_command("CLUSTER", "INFO")
        if isinstance(text, bytes):
            text = text.decode()
        return dict(
            line.split(":", 1) for line in str(text).splitlines() if ":" in line
        )

    def kill(self, port: int) -> None:
        """Kill one node at once (SIGKILL: no goodbye to the others)."""
        process = self.processes.pop(port)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        """Stop every node by its PID."""
        for port in list(self.processes):
            process = self.processes.pop(port)
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def remove(self) -> None:
        """Stop every node and delete their directories."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def admin(self, port: int) -> redis.Redis:
        """A blocking client of one node, for the test's own checks."""
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def flush(self) -> None:
        """Empty every master (the renamed FLUSHDB, which no store can call)."""
        for port in self.masters():
            with self.admin(port) as client:
                client.execute_command(FLUSHDB)

    def keys(self, pattern: str) -> list[bytes]:
        """Every key matching ``pattern`` on every master (SCAN, for the tests' checks)."""
        found: list[bytes] = []
        for port in self.masters():
            with self.admin(port) as client:
                found.extend(client.scan_iter(match=pattern))
        return found

    @staticmethod
    def _wait(check: object, message: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():  # type: ignore[operator]
                    return
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(message)
            time.sleep(0.05)


class RedisClusterCase:
    """Mixin: ``cls.redis_cluster`` runs for the whole test class."""

    redis_cluster: ClassVar[RedisCluster]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # type: ignore[misc]
        cluster = RedisCluster()
        cls.addClassCleanup(cluster.remove)  # type: ignore[attr-defined]
        cluster.start()
        cls.redis_cluster = cluster

    def setUp(self) -> None:
        self.redis_cluster.flush()
        super().setUp()  # type: ignore[misc]
