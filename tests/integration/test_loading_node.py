"""A cluster node that is loading its dataset into memory answers INFO and refuses everything
else (LOADING): forming the cluster waits until it has loaded, and `health` and `status` say
it is loading; so do they for the primary of a Sentinel deployment.

A cluster as `up` runs it; then one primary, its data in the AOF's RDB base, is restarted
with Redis's own test knobs: `key-load-delay` (microseconds per key loaded) and
`loading-process-events-interval-bytes` (how often it answers clients while loading). It then
loads for as long as the test needs, and finishes as soon as the test sets the delay to 0.
Judged by what the node answers (its LOADING refusals counted in INFO errorstats).
"""

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from redkeep.actions import stack
from redkeep.bundle import Bundle
from redkeep.config.deployment import BUS_PORT_OFFSET, SENTINEL_PORT_OFFSET
from redkeep.errors import RedkeepError
from redkeep.render.nodes import LOOPBACK, planned
from redkeep.stack import forming, nodes, processes, redis_server
from tests.conftest import run_redkeep
from tests.integration.test_cluster import node_client, poll
from tests.servers import free_port_span

KEYS = 4000  # ~4 MB: loads for 40 s at 10 ms a key, far longer than the test needs
LOAD_DELAY_US = 10_000
VALUE = "v" * 1100  # more than 1024 bytes: the node answers clients after every key


def test_forming_waits_for_a_loading_node_and_health_says_it_is_loading(tmp_path, redis_binary):
    base = free_port_span([*range(6), *(BUS_PORT_OFFSET + i for i in range(6))])
    root = tmp_path / "cluster"
    init = run_redkeep("init", root, "--topology", "cluster", "--tls-port", base)
    assert init.returncode == 0, init.stderr
    with _running(root) as restarted:
        bundle = Bundle(root)
        tag = next(str(i) for i in range(100) if key_slot(str(i).encode()) <= 5460)
        loading = _load_slowly(bundle, base, f"{{{tag}}}", restarted)  # redis-0: slots 0-5460

        health = run_redkeep("health", "--dir", root)
        said = health.stdout + health.stderr
        assert health.returncode == 1, said
        assert f"redis-0 (localhost:{base}) is loading its dataset into memory" in said
        status = run_redkeep("status", "--dir", root)
        assert "redis-0" in status.stdout
        assert "is loading its dataset into memory" in status.stdout + status.stderr
        assert "Traceback" not in status.stderr + health.stderr

        # It loads for longer than forming waits: one line that names it.
        with pytest.raises(RedkeepError, match="redis-0 is still loading its dataset into memory"):
            _form(bundle, timeout=0.5)
        refused = _loading_refusals(loading)
        outcome: dict[str, object] = {}
        former = threading.Thread(target=_form_into, args=(bundle, outcome), daemon=True)
        former.start()
        poll(lambda: _loading_refusals(loading) > refused, "forming to meet the LOADING reply")
        assert loading.info("persistence")["loading"] == 1  # still loading: forming waits
        loading.config_set("key-load-delay", 0)
        former.join(timeout=60)
        assert not former.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert outcome["done"] == []  # formed before: nothing to do
        assert loading.info("persistence")["loading"] == 0
        assert loading.dbsize() == KEYS
        loading.close()
        poll(lambda: run_redkeep("health", "--dir", root).returncode == 0, "healthy again")


def test_a_loading_primary_of_a_sentinel_deployment_is_said_loading(tmp_path, redis_binary):
    base = free_port_span([0, 1, 2, SENTINEL_PORT_OFFSET, SENTINEL_PORT_OFFSET + 2])
    root = tmp_path / "sentinel"
    init = run_redkeep("init", root, "--topology", "sentinel", "--tls-port", base)
    assert init.returncode == 0, init.stderr
    with _running(root) as restarted:
        loading = _load_slowly(Bundle(root), base, "", restarted)

        health = run_redkeep("health", "--dir", root)
        said = health.stdout + health.stderr
        assert health.returncode == 1, said
        assert f"redis-0 (localhost:{base}) is loading its dataset into memory" in said
        # It answers INFO but not PING: status reported it, it did not stop at "cannot connect".
        status = run_redkeep("status", "--dir", root, "--json")
        assert "Traceback" not in status.stderr + health.stderr
        details = {node["name"]: node["detail"] for node in json.loads(status.stdout)["nodes"]}
        assert "is loading its dataset into memory" in details["redis-0"]
        assert details["redis-1"] == "ok"
        assert _is_loading(loading)  # all the above was said while it loaded

        # `up` waiting for it: past its timeout, still waiting, for the node is loading.
        pid = restarted[0].pid
        waited: dict[str, object] = {}
        waiter = threading.Thread(target=_wait_into, args=(Bundle(root), pid, waited), daemon=True)
        refused = _loading_refusals(loading)
        waiter.start()
        time.sleep(2 * WAIT_TIMEOUT)  # past the timeout it was given (not a measure)
        poll(lambda: _loading_refusals(loading) > refused + 1, "the wait to meet LOADING")
        assert waiter.is_alive() and _is_loading(loading), waited

        loading.config_set("key-load-delay", 0)
        poll(lambda: not _is_loading(loading), "redis-0 to finish loading")
        waiter.join(timeout=60)
        assert waited == {"done": True}, waited
        assert loading.dbsize() == KEYS
        loading.close()
        poll(lambda: run_redkeep("health", "--dir", root).returncode == 0, "healthy again")


@contextlib.contextmanager
def _running(root) -> Iterator[list[subprocess.Popen]]:
    """The deployment `up` runs; the nodes the test restarts go in the list, and `down`
    stops them all at the end."""
    restarted: list[subprocess.Popen] = []
    try:
        up = run_redkeep("up", root, "--detach")
        assert up.returncode == 0, up.stderr
        yield restarted
    finally:
        down = run_redkeep("down", root)
        for process in restarted:
            process.wait(timeout=30)
        assert down.returncode == 0, down.stderr


def _load_slowly(
    bundle: Bundle, port: int, prefix: str, restarted: list[subprocess.Popen]
) -> redis.Redis:
    """Write KEYS keys to redis-0 (at `port`), restart it to load them slowly; a client to it
    once it is loading."""
    primary = node_client(bundle, port)
    pipe = primary.pipeline(transaction=False)
    for index in range(KEYS):
        pipe.set(f"{prefix}:{index}", VALUE)
    pipe.execute()
    primary.bgrewriteaof()  # the keys into the AOF's RDB base (loaded with the knobs)
    poll(lambda: _rewritten(primary), "the AOF rewrite to finish")
    primary.close()
    restarted.append(_restart_loading_slowly(bundle, "redis-0"))
    loading = node_client(bundle, port)
    poll(lambda: _is_loading(loading), "redis-0 to listen again, loading")
    return loading


def _rewritten(client) -> bool:
    info = client.info("persistence")
    return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]


def _restart_loading_slowly(bundle: Bundle, name: str) -> subprocess.Popen:
    """Stop node `name` (it saves), then start it on its run/NAME.conf with the load knobs;
    `down` knows it as the bundle's node (its working directory)."""
    service = nodes.node_service(name)
    located = processes.locate(service, bundle.root, bundle.run_dir)
    assert located.pid is not None
    os.kill(located.pid, signal.SIGTERM)
    assert processes.wait_for_exit(located.pid, 30)
    knobs = ["--key-load-delay", str(LOAD_DELAY_US), "--loading-process-events-interval-bytes",
             "1024"]  # fmt: skip
    binary = redis_server.find_redis_server()
    return subprocess.Popen(  # noqa: S603 - our redis-server, our file
        [binary, str(nodes.conf_path(bundle, name)), *knobs],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _is_loading(client) -> bool:
    try:
        return client.info("persistence")["loading"] == 1
    except redis.ConnectionError:  # not listening yet
        return False


def _loading_refusals(client) -> int:
    return client.info("errorstats").get("errorstat_LOADING", {}).get("count", 0)


def _form(bundle: Bundle, timeout: float = forming.FORM_TIMEOUT) -> list[str]:
    return forming.form_cluster(
        bundle.deployment("admin"), planned(bundle.settings), LOOPBACK, timeout=timeout
    )


WAIT_TIMEOUT = 0.5


def _wait_into(bundle: Bundle, pid: int, outcome: dict[str, object]) -> None:
    node = next(n for n in bundle.deployment("exporter").nodes if n.name == "redis-0")
    try:
        stack.wait_until_healthy(
            bundle, pid, None, bundle.run_dir / "redis-0.log", timeout=WAIT_TIMEOUT,
            target=node.target, service=nodes.node_service("redis-0"),
        )  # fmt: skip
        outcome["done"] = True
    except Exception as error:  # noqa: BLE001 - reported to the test's thread
        outcome["error"] = repr(error)


def _form_into(bundle: Bundle, outcome: dict[str, object]) -> None:
    try:
        outcome["done"] = _form(bundle)
    except Exception as error:  # noqa: BLE001 - reported to the test's thread
        outcome["error"] = repr(error)
