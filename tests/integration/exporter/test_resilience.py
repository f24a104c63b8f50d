"""The exporter when things go wrong: hung servers, killed connections, refused checks,
rotated passwords, a port already taken. What matters at 3 a.m.: it answers Prometheus in
time, says what is wrong once, and does not make things worse."""

import socket
import threading
import time

import redis
import yaml

from tests.conftest import run_redkeep
from tests.integration.conftest import client_as, start_bundle, stop_bundle
from tests.integration.exporter.conftest import FreezableProxy, parse, value
from tests.servers import free_port

PROMETHEUS_TIMEOUT = {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}


class SilentServer:
    """Accepts connections and never says a word: a Redis hung before it answers AUTH."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


def test_connect_and_auth_obey_the_scrape_deadline_even_for_concurrent_scrapes(
    exporter_factory,
):
    silent = SilentServer()
    try:
        exporter = exporter_factory("--url", f"redis://user:pw@127.0.0.1:{silent.port}")
        results: list = []

        def scrape() -> None:
            # The client gives up after 5 s; the AUTH timeout alone is 5 s, and three scrapes
            # queued behind one another would need 15 s.
            results.append(exporter.get(headers=PROMETHEUS_TIMEOUT, timeout=5))

        threads = [threading.Thread(target=scrape) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        silent.close()
    assert len(results) == 3
    for status, body, _ in results:
        assert status == 200
        assert value(parse(body), "redis_up") == 0


def test_a_stall_in_the_second_round_still_serves_the_first(redis_factory, exporter_factory):
    server = redis_factory()
    proxy = FreezableProxy(server.port)
    exporter = exporter_factory("--url", f"redis://127.0.0.1:{proxy.port}")
    assert value(exporter.metrics(), "redis_up") == 1
    proxy.freeze_on = b"SLOWLOG"  # round one passes; round two's request never arrives
    try:
        status, body, _ = exporter.get(headers=PROMETHEUS_TIMEOUT, timeout=5)
    finally:
        proxy.freeze_on = None
        proxy.frozen.clear()
    families = parse(body)
    assert status == 200
    assert value(families, "redis_up") == 1
    assert value(families, "redis_memory_used_bytes") > 0  # INFO came through
    assert value(families, "redkeep_exporter_collector_success", collector="info") == 1
    assert value(families, "redkeep_exporter_collector_success", collector="slowlog") == 0
    assert value(families, "redis_exporter_last_scrape_error", err="timeout") == 1
    assert "redis_slowlog_length" not in families


def test_the_connection_is_kept_and_a_killed_one_replaced_within_the_scrape(
    redis_factory, exporter_factory
):
    server = redis_factory()
    client = redis.Redis(port=server.port)
    exporter = exporter_factory("--url", f"redis://127.0.0.1:{server.port}")

    def exporter_ids() -> set[int]:
        return {c["id"] for c in client.client_list() if c["cmd"] == "acl|log"}

    exporter.metrics()
    first = exporter_ids()
    for _ in range(5):
        exporter.metrics()
    assert exporter_ids() == first and len(first) == 1  # one connection, kept
    client.client_kill_filter(_type="normal", skipme=True)
    families = exporter.metrics()
    assert value(families, "redis_up") == 1  # not a false "Redis is down"
    assert exporter_ids() and exporter_ids() != first
    server.stop()
    server.log.unlink()
    server.start()
    assert value(exporter.metrics(), "redis_up") == 1  # after a restart too
    assert "fails" not in exporter.log.read_text()


def test_a_redis_that_goes_away_is_reported_once_and_posture_is_not_left_stale(
    redis_factory, exporter_factory
):
    server = redis_factory()
    exporter = exporter_factory("--url", f"redis://127.0.0.1:{server.port}")
    deadline = time.monotonic() + 10
    while "redkeep_unauthenticated_access" not in (families := exporter.metrics()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert value(families, "redkeep_protected_mode") == 1
    server.stop()
    for _ in range(3):
        families = exporter.metrics()
    assert value(families, "redis_up") == 0
    assert "redkeep_protected_mode" not in families  # from CONFIG: not asked, not claimed
    log = exporter.log.read_text()
    assert log.count("fails: connection refused") == 1


def test_a_non_redis_port_gives_redis_up_0_not_a_broken_reply(exporter_factory):
    other = exporter_factory("--url", "redis://127.0.0.1:1")  # an HTTP server, not Redis
    port = other.url.rsplit(":", 1)[1]
    exporter = exporter_factory(
        "--url", f"redis://127.0.0.1:{port}", "--checks-url", f"redis://127.0.0.1:{port}"
    )
    families = exporter.metrics()
    assert value(families, "redis_up") == 0
    assert value(families, "redis_exporter_last_scrape_error", err="protocol") == 1
    assert "Traceback" not in exporter.log.read_text()


def checks_file(tmp_path, *checks: dict):
    path = tmp_path / "checks.yaml"
    path.write_text(yaml.safe_dump({"checks": list(checks)}))
    return path


def test_refused_and_failing_checks_back_off_and_say_so_once(
    redis_factory, exporter_factory, tmp_path
):
    server = redis_factory(
        [
            "user default off",
            "user admin on >admin-pw ~* &* +@all",
            "user watcher on >watch-pw ~app:* -@all +@read +ping +info +config|get +select "
            "+slowlog +latency +client|list +acl|log",
        ]
    )
    admin = redis.Redis(port=server.port, username="admin", password="admin-pw")
    admin.set("app:flag", 1)
    admin.set("app:text", "not a list")
    checks = checks_file(
        tmp_path,
        {"name": "secret", "type": "exists", "key": "other:key", "interval_seconds": 0.2},
        {"name": "wrong", "type": "list_length", "key": "app:text", "interval_seconds": 1},
        {"name": "flag", "type": "exists", "key": "app:flag", "interval_seconds": 0.2},
    )
    exporter = exporter_factory(
        "--url", f"redis://watcher:watch-pw@127.0.0.1:{server.port}", "--checks", checks
    )
    before = admin.info("stats")["total_connections_received"]
    time.sleep(3)
    families = exporter.metrics()
    assert value(families, "redkeep_check_success", check="secret") == 0
    assert value(families, "redkeep_check_success", check="wrong") == 0
    assert value(families, "redkeep_check_success", check="flag") == 1
    assert value(families, "redkeep_check_key_exists", check="flag") == 1
    # Refused once (then switched off), WRONGTYPE at most once a second: no storm.
    refusals = [entry for entry in admin.acl_log() if entry["object"] == "other:key"]
    assert [entry["count"] for entry in refusals] == [1]
    assert admin.info("errorstats")["errorstat_WRONGTYPE"]["count"] <= 5
    # One connection for the checks and one for scrapes (a reconnect or two on a loaded
    # machine); a storm would open one per check run, 30 or more in these 3 s.
    assert admin.info("stats")["total_connections_received"] - before <= 6
    log = exporter.log.read_text()
    assert log.count("check secret switched off") == 1
    assert "redkeep init --force" in log
    assert log.count("check wrong failed") == 1
    assert "watch-pw" not in log


def test_a_missing_timestamp_key_is_reported_and_the_age_keeps_growing(
    redis_factory, exporter_factory, tmp_path
):
    server = redis_factory()
    client = redis.Redis(port=server.port)
    checks = checks_file(
        tmp_path,
        {
            "name": "market_data_freshness",
            "type": "key_age",
            "key": "market:status",
            "field": "updated_at",
            "interval_seconds": 0.2,
        },
    )
    exporter = exporter_factory("--url", f"redis://127.0.0.1:{server.port}", "--checks", checks)

    def wait_for(condition) -> dict:
        deadline = time.monotonic() + 10
        while not condition(families := exporter.metrics()):
            assert time.monotonic() < deadline, families
            time.sleep(0.2)
        return families

    families = wait_for(lambda f: "redkeep_check_key_exists" in f)
    assert value(families, "redkeep_check_key_exists", check="market_data_freshness") == 0
    assert "redkeep_check_key_age_seconds" not in families
    stamp = int(time.time()) - 100
    client.hset("market:status", "updated_at", stamp)
    families = wait_for(lambda f: "redkeep_check_key_timestamp_seconds" in f)
    assert value(families, "redkeep_check_key_timestamp_seconds") == stamp
    first = value(families, "redkeep_check_key_age_seconds")
    time.sleep(1.1)
    assert value(exporter.metrics(), "redkeep_check_key_age_seconds") > first + 1


def test_the_exporter_follows_a_password_rotation(tmp_path, redis_binary, exporter_factory):
    bundle = start_bundle(tmp_path / "b")
    try:
        exporter = exporter_factory("--dir", bundle.root)
        assert value(exporter.metrics(), "redis_up") == 1
        for step in ("rotate", "finish-rotation"):
            assert run_redkeep("users", step, "exporter", "--dir", bundle.root).returncode == 0
        client_as(bundle, "admin").client_kill_filter(_type="normal", skipme=True)
        families = exporter.metrics()
        assert value(families, "redis_up") == 1
        assert "password of" in exporter.log.read_text()
    finally:
        stop_bundle(bundle)


def test_up_refuses_an_exporter_port_that_is_taken(tmp_path, redis_binary):
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        root = tmp_path / "s"
        env = {"REDKEEP_EXPORTER__LISTEN": f"127.0.0.1:{port}"}
        assert run_redkeep("init", root, "--tls-port", free_port(), env=env).returncode == 0
        up = run_redkeep("up", root, "--detach")
    assert up.returncode == 1
    assert f"the exporter cannot listen on 127.0.0.1:{port}" in up.stderr
    assert not (root / "run" / "redis.pid").exists()  # Redis was stopped again


def test_tls_without_a_client_certificate(tls_redis, pki, exporter_factory):
    exporter = exporter_factory(
        "--url",
        f"rediss://admin:admin-secret@127.0.0.1:{tls_redis.tls_port}",
        "--tls-ca",
        pki.ca_cert,
    )
    deadline = time.monotonic() + 10
    while "redkeep_tls_certificate_expires_in_seconds" not in (families := exporter.metrics()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert value(families, "redis_up") == 1
    assert value(families, "redkeep_tls_certificate_expires_in_seconds") > 0
    assert value(families, "redkeep_default_user_enabled") == 0


def test_the_exporter_without_a_bundle_never_imports_what_a_scrape_does_not_need(
    mtls_redis, pki, exporter_factory
):
    """pydantic and cryptography doubled the exporter's memory; neither serves a scrape.

    Python logs every import as it happens (PYTHONPROFILEIMPORTTIME), later lazy ones too:
    the log covers start-up, scrapes and the TLS posture probe (certificate expiry).
    """
    exporter = exporter_factory(
        "--url",
        f"rediss://admin:admin-secret@127.0.0.1:{mtls_redis.tls_port}",
        "--tls-ca",
        pki.ca_cert,
        "--tls-cert",
        pki.client_cert(),
        "--tls-key",
        pki.client_key(),
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    deadline = time.monotonic() + 10
    while "redkeep_tls_certificate_expires_in_seconds" not in (families := exporter.metrics()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    days = value(families, "redkeep_tls_certificate_expires_in_seconds") / 86400
    assert 29 < days <= 30  # the pki fixture's 30-day server certificate
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in exporter.log.read_text().splitlines()
        if line.startswith("import time:")
    }
    assert "redkeep" in imported  # the log works
    assert imported.isdisjoint({"pydantic", "pydantic_core", "cryptography", "yaml", "redis"})
