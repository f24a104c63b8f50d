"""A replica whose link is up and whose ACKs are fresh, but which is megabytes behind its
primary, is not "in sync" for choosing a capture source (cluster and Sentinel alike); how far
behind is too far is backup.max_replica_gap_bytes (1 MiB unless configured).

The replica reaches its primary through a relay on loopback that can hold the primary's stream
while passing the replica's ACKs: the primary then lists the replica online with a lag of a
second or less (what the ACK rule alone looked at) while the replica lacks what was written.
"""

import socket
import threading
from collections.abc import Iterator

import pytest

from redkeep.actions.backup_cluster import MAX_GAP, listed_replica, replica_out_of_sync
from redkeep.actions.backup_sentinel import read_topology
from redkeep.backup.serverinfo import read_info
from redkeep.config.schema import Settings
from redkeep.redis.client import client_for
from redkeep.redis.target import Target
from tests.hanodes import wait_until


class HeldLink:
    """A TCP relay to `port` whose server-to-client direction can be held (`hold`/`release`)."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.flowing), daemon=True
            ).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, gate: threading.Event | None) -> None:
        while True:
            if gate is not None:
                gate.wait()
            try:
                data = source.recv(1 << 16)
                if not data:
                    return
                sink.sendall(data)
            except OSError:
                return

    def hold(self) -> None:
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.release()
        for item in self.sockets:
            item.close()


@pytest.fixture
def held_pair(redis_factory) -> Iterator[tuple[Target, Target, HeldLink]]:
    primary = redis_factory(["repl-diskless-sync-delay 0"])
    link = HeldLink(primary.port)
    replica = redis_factory([f"replicaof 127.0.0.1 {link.port}"])
    targets = [Target("redis", host="127.0.0.1", port=server.port) for server in (primary, replica)]
    wait_until(lambda: _gap(*targets) == 0, "the replica to sync through the relay")
    yield targets[0], targets[1], link
    link.close()


def _gap(primary: Target, replica: Target) -> int | None:
    before = read_info(primary)
    after = read_info(replica)
    if after.get("master_link_status") != "up":
        return None
    return int(before["master_repl_offset"]) - int(after["slave_repl_offset"])


def test_a_replica_megabytes_behind_is_not_captured(held_pair):
    primary, replica, link = held_pair
    why, state = replica_out_of_sync(replica, read_info(primary))
    assert (why, state.split(",")[0]) == ("", "0 bytes behind its primary")
    assert read_topology([primary, replica]).in_sync == (replica,)

    link.hold()
    writer = client_for(primary)
    # 64 KiB behind: in sync by the default gap, not by a smaller configured one.
    writer.set("small", "x" * (64 << 10))
    wait_until(lambda: (_gap(primary, replica) or 0) > 64 << 10, "the replica to fall behind")
    assert replica_out_of_sync(replica, read_info(primary))[0] == ""
    assert read_topology([primary, replica]).in_sync == (replica,)
    configured = Settings.model_validate({"backup": {"max_replica_gap_bytes": 16 << 10}})
    small_gap = configured.backup.max_replica_gap_bytes
    why, _ = replica_out_of_sync(replica, read_info(primary), small_gap)
    assert why.startswith("is ") and why.endswith("bytes behind its primary (more than 16384)")
    topology = read_topology([primary, replica], small_gap)
    assert topology.in_sync == () and "(more than 16384)" in topology.lagging[0]

    writer.set("big", "x" * (4 << 20))  # 4 MiB the replica will not see while held
    wait_until(lambda: (_gap(primary, replica) or 0) > 2 * MAX_GAP, "the replica to fall behind")
    listed = listed_replica(read_info(primary), replica)
    assert listed["state"] == "online" and int(listed["lag"]) <= 1  # the old rule: "in sync"

    why, state = replica_out_of_sync(replica, read_info(primary))
    assert why.startswith("is ") and f"bytes behind its primary (more than {MAX_GAP})" in why
    topology = read_topology([primary, replica])
    assert topology.in_sync == ()
    assert "bytes behind its primary" in topology.lagging[0]

    link.release()
    wait_until(lambda: _gap(primary, replica) == 0, "the replica to catch up")
    assert replica_out_of_sync(replica, read_info(primary))[0] == ""
    writer.close()
