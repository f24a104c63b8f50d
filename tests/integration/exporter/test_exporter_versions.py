"""`redkeep exporter` on every server build. The reference is redis_exporter itself: Debian's
prometheus-redis-exporter 1.45.0 scrapes the same server, and every family it serves there
redkeep serves under the same name. redis_instance_info names the server as today's
redis_exporter does (its exporter/info.go): `redis_mode` from Valkey's `server_mode`, and
`valkey_version`, `valkey_release_stage` labels on Valkey. The families served on each build
are listed at the end of the run (under "server builds")."""

import re
import subprocess
import time
import urllib.request

import pytest
import redis

from tests.integration.exporter.conftest import parse, value
from tests.servers import ServerBuild, free_port, require_binary, stop_process

REFERENCE = "prometheus-redis-exporter"
# Families redis_exporter 1.45.0 serves that redkeep does not, and why.
NOT_SERVED = {
    "redis_last_key_groups_scrape_duration_milliseconds": "no key-group scanning on scrapes",
    # 1.45.0 reads a keyspace line's fourth field, by position, as KeyDB's cached_keys: on Redis
    # 7.4+ and Valkey 9 that field is subexpiry / keys_with_volatile_items. Today's
    # redis_exporter serves it as redis_db_keys_with_expiring_items (#1168), and so does redkeep.
    "redis_db_keys_cached": "1.45.0 misreads subexpiry (redis_exporter#1168)",
}
# 1.45.0 also turns Redis 8's `# Keysizes` lines (`db0_distrib_strings_sizes:1=1`) into
# families; today's redis_exporter cannot parse such a value as a number and serves nothing.
KEYSIZES = re.compile(r"redis_db\d+_distrib_\w+")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def busy(build: ServerBuild, server_factory):
    """A server with data, an error reply, slow-log and latency events."""
    debug = ["enable-debug-command yes"] if build.version >= (7, 0, 0) else []
    server = server_factory(
        build, ["latency-monitor-threshold 1", "slowlog-log-slower-than 0", *debug]
    )
    client = redis.Redis(port=server.port)
    client.set("k", "v")
    client.get("k")
    client.get("missing")
    with pytest.raises(redis.ResponseError):
        client.execute_command("NOSUCHCOMMAND")
    client.execute_command("DEBUG", "SLEEP", "0.01")
    return server


def reference_scrape(port: int, workdir, *options: str, env: dict | None = None) -> dict:
    """One /metrics of redis_exporter 1.45.0 on the server at `port` (or, with `options`,
    at the -redis.addr they give: TLS, a user)."""
    binary = require_binary(REFERENCE)
    listen = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"-redis.addr=redis://127.0.0.1:{port}",
            f"-web.listen-address=127.0.0.1:{listen}",
            "-redis-only-metrics",
            *options,
        ],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                url = f"http://127.0.0.1:{listen}/metrics"
                with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
                    return parse(response.read().decode())
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "no /metrics"
                time.sleep(0.05)
    finally:
        stop_process(process)


def instance_labels(families: dict) -> dict[str, str]:
    ((text, _),) = families["redis_instance_info"]
    return dict(LABEL.findall(text))


def test_what_redis_exporter_serves_on_each_build_redkeep_serves_too(
    server_build, server_factory, exporter_factory, record_property, tmp_path
):
    server = busy(server_build, server_factory)
    theirs = reference_scrape(server.port, tmp_path)
    ours = exporter_factory("--url", f"redis://127.0.0.1:{server.port}").metrics()
    record_property("server_names", ("exporter metric families", sorted(ours)))

    assert value(theirs, "redis_up") == 1 and len(theirs) > 100  # it did scrape this build
    missing = [
        name for name in theirs if name not in ours and name not in NOT_SERVED
        if not KEYSIZES.fullmatch(name)
    ]  # fmt: skip
    assert missing == []
    for family, labels in (
        ("redis_db_keys", {"db": "db0"}),
        ("redis_commands_total", {"cmd": "get"}),
        ("redis_errors_total", {"err": "ERR"}),
        ("redis_connected_slaves", {}),
    ):
        assert value(ours, family, **labels) == value(theirs, family, **labels), family
    assert value(ours, "redis_latency_spike_duration_seconds", event_name="command") > 0
    # From LATENCY HISTOGRAM, which Redis has since 7.0.
    histograms = "redis_commands_latencies_usec_bucket" in ours
    assert histograms == (server_build.version >= (7, 0, 0))

    # redis_instance_info: the labels redis_exporter 1.45.0 has, with the same values, except
    # redis_mode, which today's redis_exporter fills from Valkey's server_mode.
    reference, labels = instance_labels(theirs), instance_labels(ours)
    assert labels["redis_mode"] == "standalone"
    assert {k: v for k, v in labels.items() if k in reference and k != "redis_mode"} == {
        k: v for k, v in reference.items() if k != "redis_mode"
    }
    version = ".".join(map(str, server_build.version))
    if server_build.flavour == "valkey":
        assert reference["redis_mode"] == ""  # 1.45.0 predates server_mode
        assert labels["redis_version"] == "7.2.4"  # what Valkey reports there
        assert (labels["valkey_version"], labels["valkey_release_stage"]) == (version, "ga")
    else:
        assert labels["redis_version"] == version
        assert "valkey_version" not in labels and "valkey_release_stage" not in labels
