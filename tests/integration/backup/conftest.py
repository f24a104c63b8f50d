"""Fixtures for backups: a bundle that snapshots at once, a dataset of every type, an S3 API
server (moto, on loopback), and an HTTP sink that records webhook calls."""

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import redis
from moto.server import ThreadedMotoServer

from redkeep.bundle import Bundle
from tests.integration.conftest import client_as, start_bundle, stop_bundle
from tests.servers import free_port

# Snapshots for replicas start at once instead of after 5 s (tests take many).
FAST_SNAPSHOTS = {"REDKEEP_REDIS__REPL_DISKLESS_SYNC_DELAY": "0"}


@pytest.fixture(scope="module")
def backup_bundle(tmp_path_factory, redis_binary) -> Iterator[Bundle]:
    bundle = start_bundle(tmp_path_factory.mktemp("backup") / "stack", env=FAST_SNAPSHOTS)
    fill(client_as(bundle, "admin"))
    yield bundle
    stop_bundle(bundle)


def fill(client: redis.Redis, prefix: str = "") -> None:
    """Every data type, with and without TTLs, in db 0 and db 3."""
    pipe = client.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"{prefix}string:{i}", f"value-{i}" * (i % 7 + 1))
    pipe.set(f"{prefix}counter", 12345)
    pipe.set(f"{prefix}ttl:string", "soon", ex=3600)
    pipe.hset(f"{prefix}hash", mapping={f"f{i}": i for i in range(100)})
    pipe.hset(f"{prefix}ttl:hash", mapping={"a": 1})
    pipe.expire(f"{prefix}ttl:hash", 7200)
    pipe.rpush(f"{prefix}list", *[f"item-{i}" for i in range(300)])
    pipe.sadd(f"{prefix}set", *range(150))
    pipe.sadd(f"{prefix}intset", 1, 2, 3)
    pipe.zadd(f"{prefix}zset", {f"m{i}": i * 1.5 for i in range(120)})
    for i in range(50):
        pipe.xadd(f"{prefix}stream", {"n": i, "payload": "x" * 20})
    pipe.pfadd(f"{prefix}hll", *[f"u{i}" for i in range(100)])
    pipe.setbit(f"{prefix}bits", 1000, 1)
    pipe.execute()
    client.xgroup_create(f"{prefix}stream", "workers", id="0")
    client.xreadgroup("workers", "w1", {f"{prefix}stream": ">"}, count=5)
    pipe = client.pipeline(transaction=True)
    pipe.execute_command("SELECT", 3)
    pipe.set(f"{prefix}db3:key", "in db 3")
    pipe.set(f"{prefix}db3:ttl", "in db 3", ex=900)
    pipe.execute_command("SELECT", 0)
    pipe.execute()


def snapshot(client_for_db, databases=(0, 3)) -> dict[tuple[int, bytes], tuple]:
    """{(db, key): (DUMP payload, PTTL, stream contents)} of every key."""
    found = {}
    for db in databases:
        client = client_for_db(db)
        for key in client.scan_iter(count=500):
            found[(db, key)] = (client.dump(key), client.pttl(key), _stream(client, key))
    return found


def _stream(client, key) -> tuple | None:
    """A stream's entries, groups and pending counts: what AOF replay must reproduce.

    A consumer's seen-time is not in the AOF (replay recreates the consumer at load time),
    so restored streams with consumer groups differ from the source in that field only.
    """
    if client.type(key) != b"stream":
        return None
    groups = tuple(
        (group["name"], group["pending"], group["last-delivered-id"])
        for group in client.xinfo_groups(key)
    )
    return tuple(client.xrange(key)), groups


def assert_same_data(source, target, exact_streams: bool = True) -> None:
    """Every key with the same DUMP payload (streams from an AOF: same contents) and PTTL."""
    assert source.keys() == target.keys()
    for key, (payload, pttl, stream) in source.items():
        if stream is not None and not exact_streams:
            assert target[key][2] == stream, key
        else:
            assert target[key][0] == payload, key
        if pttl < 0:
            assert target[key][1] == pttl, key
        else:
            assert abs(target[key][1] - pttl) < 60_000, key


@dataclass
class S3:
    endpoint: str
    bucket: str
    env: dict[str, str]

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    """A real S3 API server (moto's server mode) on loopback; AWS_* variables point at it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    s3 = S3(env["AWS_ENDPOINT_URL"], "redkeep-backups", env)
    s3.client().create_bucket(Bucket=s3.bucket)
    yield s3
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@dataclass
class Sink:
    url: str
    requests: list[dict] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def http_sink() -> Iterator[Sink]:
    """A local HTTP server that records every POST (path and JSON body)."""
    sink = Sink(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            sink.requests.append({"path": self.path, "body": json.loads(body or b"{}")})
            self.send_response(sink.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sink
    server.shutdown()
