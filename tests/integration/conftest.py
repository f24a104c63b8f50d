"""Bundles created by `redkeep init` and started by `redkeep up --detach`, as a user would."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redkeep.bundle import Bundle
from tests.conftest import run_redkeep
from tests.hanodes import HADeployment, make_pki, start_cluster, start_sentinel_group
from tests.servers import free_port, wait_for_exit


def start_bundle(root: Path, env: dict[str, str] | None = None) -> Bundle:
    """Init a bundle at `root` on a free port (unless one is there) and start it detached."""
    if not (root / "redkeep.yaml").exists():
        init = run_redkeep("init", root, "--tls-port", free_port(), env=env)
        assert init.returncode == 0, init.stderr
    up = run_redkeep("up", root, "--detach")
    assert up.returncode == 0, up.stderr
    return Bundle(root)


def stop_bundle(bundle: Bundle) -> None:
    pidfile = bundle.run_dir / "redis.pid"
    pid = int(pidfile.read_text()) if pidfile.exists() else None
    run_redkeep("down", bundle.root)
    if pid:
        wait_for_exit(pid)


@pytest.fixture(scope="module")
def running_bundle(tmp_path_factory, redis_binary) -> Iterator[Bundle]:
    """A bundle up and running for the whole test module; stopped at the end."""
    bundle = start_bundle(tmp_path_factory.mktemp("bundle") / "stack")
    yield bundle
    stop_bundle(bundle)


def client_as(
    bundle: Bundle,
    user: str | None,
    password: str | None = None,
    client_cert: bool = True,
    **kwargs,
) -> redis.Redis:
    """A plain redis-py client for the bundle (independent of redkeep's own connect code)."""
    tls = bundle.tls
    if user is not None and password is None:
        password = bundle.password(user)
    return redis.Redis(
        host="localhost",
        port=bundle.settings.redis.tls_port,
        username=user,
        password=password,
        ssl=True,
        ssl_ca_certs=str(tls.ca_cert),
        ssl_certfile=str(tls.client_cert()) if client_cert else None,
        ssl_keyfile=str(tls.client_key()) if client_cert else None,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),  # a refusal must show at once, not after retries
        decode_responses=kwargs.pop("decode_responses", True),
        **kwargs,
    )


# A small TLS cluster and a Sentinel group from tests/hanodes.py, one of each per test module
# that asks (a module may define its own `cluster`, as the cluster backup tests do).
@pytest.fixture(scope="module")
def ha_pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("ha-pki") / "tls")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_binary, ha_pki) -> Iterator[HADeployment]:
    deployment = start_cluster(redis_binary, tmp_path_factory.mktemp("cluster"), ha_pki)
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory, redis_binary, ha_pki) -> Iterator[HADeployment]:
    deployment = start_sentinel_group(redis_binary, tmp_path_factory.mktemp("sentinel"), ha_pki)
    yield deployment
    deployment.stop()
