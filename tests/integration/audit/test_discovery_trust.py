"""Discovery sends the seed's password only where it may: a plaintext seed's password never goes
to another host a node merely announces (a forged Sentinel hello, replica-announce-ip)."""

import socket
import threading

import redis

from redkeep.redis.deployment import Role
from redkeep.redis.discover import discover
from redkeep.redis.target import Target
from tests.servers import free_port

ELSEWHERE = "127.0.0.2"  # another host as far as discovery knows (still loopback, for the test)


class Listener:
    """A TCP listener on ELSEWHERE that records whatever a client sends it."""

    def __init__(self) -> None:
        self.sock = socket.create_server((ELSEWHERE, free_port()))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(4096))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self.sock.close()


def test_a_forged_hello_and_a_foreign_replica_get_no_password(acl_redis, redis_factory):
    primary = acl_redis
    listener = Listener()
    # A replica that announces another host (replica-announce-ip).
    redis_factory(
        [
            f"replicaof 127.0.0.1 {primary.port}",
            "masteruser admin",
            "masterauth admin-secret",
            f"replica-announce-ip {ELSEWHERE}",
            f"replica-announce-port {listener.port}",
        ]
    )
    client = redis.Redis(port=primary.port, username="admin", password="admin-secret")
    forger = redis.Redis(port=primary.port, username="admin", password="admin-secret")
    forger.client_setname("sentinel-forged-cmd")  # looks like a Sentinel in CLIENT LIST
    stop = threading.Event()
    hello = f"{ELSEWHERE},{listener.port},{'0' * 40},1,mymaster,127.0.0.1,{primary.port},1"

    def publish() -> None:
        while not stop.wait(0.2):
            client.publish("__sentinel__:hello", hello)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        while not client.info("replication").get("slave0"):
            stop.wait(0.05)
        seed = Target("redis", "127.0.0.1", primary.port, username="admin", password="admin-secret")
        found = discover(seed, timeout=10)
    finally:
        stop.set()
        publisher.join()
        listener.close()
        client.close()
        forger.close()
    assert listener.received == []  # nothing, not even a connection
    skipped = {(entry.address, entry.role) for entry in found.skipped}
    assert (f"{ELSEWHERE}:{listener.port}", Role.REPLICA) in skipped
    assert (f"{ELSEWHERE}:{listener.port}", Role.SENTINEL) in skipped
    assert all("not sent there in plaintext" in entry.reason for entry in found.skipped)
    assert [node.target.port for node in found.deployment.nodes] == [primary.port]
