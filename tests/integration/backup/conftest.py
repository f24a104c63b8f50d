"""Fixtures for backups: a bundle that snapshots at once and holds the shared dataset
(tests/datasets.py), a read-only mount, an S3 API server (moto, on loopback), and an HTTP
sink that records webhook calls."""

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import redis
from moto.server import ThreadedMotoServer

from redkeep.bundle import Bundle
from tests import datasets
from tests.integration.conftest import client_as, start_bundle, stop_bundle
from tests.servers import free_port, require_binary

# Snapshots for replicas start at once instead of after 5 s (tests take many).
FAST_SNAPSHOTS = {"REDKEEP_REDIS__REPL_DISKLESS_SYNC_DELAY": "0"}


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path, monkeypatch):
    """AOF backups outside a bundle keep their lock in $XDG_STATE_HOME/redkeep: a temp dir
    here, never the home directory of whoever runs the tests."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(scope="module")
def backup_bundle(tmp_path_factory, redis_binary) -> Iterator[Bundle]:
    """A running bundle holding the shared dataset (tests/datasets.py)."""
    bundle = start_bundle(tmp_path_factory.mktemp("backup") / "stack", env=FAST_SNAPSHOTS)
    datasets.load(admin(bundle))
    yield bundle
    stop_bundle(bundle)


def admin(bundle: Bundle, db: int = 0) -> redis.Redis:
    return client_as(bundle, "admin", db=db, decode_responses=False)


@pytest.fixture
def read_only(tmp_path):
    """A read-only bind mount of a directory (the suite runs as root), unmounted afterwards."""
    source, view = tmp_path / "rw", tmp_path / "ro"
    source.mkdir()
    view.mkdir()
    mount = require_binary("mount")
    subprocess.run([mount, "--bind", str(source), str(view)], check=True)
    subprocess.run([mount, "-o", "remount,bind,ro", str(view)], check=True)
    yield source, view
    subprocess.run([require_binary("umount"), str(view)], check=True)


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
