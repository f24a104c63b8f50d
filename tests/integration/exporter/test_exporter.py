"""`redkeep exporter` against real redis-servers: compatibility, posture, checks, deadlines."""

import base64
import os
import signal
import ssl
import time
import urllib.request
from pathlib import Path

import pytest
import redis
import yaml

from redkeep.actions.audit import write_metrics as write_audit_metrics
from redkeep.audit.checks import SEVERITIES
from redkeep.audit.report import AuditReport
from redkeep.exporter.collectors import State, info_parse
from redkeep.exporter.scrape import Scraper
from redkeep.redis.target import Target
from tests.conftest import run_redkeep
from tests.integration.conftest import start_bundle, stop_bundle
from tests.integration.exporter.conftest import FreezableProxy, parse, value

REDIS_EXPORTER_FAMILIES = [
    line.strip()
    for line in (Path(__file__).parent / "redis_exporter_families.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
# Families of redis_exporter that redkeep does not serve, and why.
NOT_SERVED = {
    "redis_last_key_groups_scrape_duration_milliseconds": "no key-group scanning on scrapes",
}
EXAMPLE_CHECKS = Path(__file__).parents[3] / "examples" / "gridtokenx-checks.yaml"


@pytest.fixture
def busy_redis(redis_factory):
    """A plain server with data, an error reply, slow-log and latency events."""
    server = redis_factory(
        ["enable-debug-command yes", "latency-monitor-threshold 1", "slowlog-log-slower-than 0"]
    )
    client = redis.Redis(port=server.port)
    client.set("k", "v")
    client.get("k")
    client.get("missing")
    with pytest.raises(redis.ResponseError):
        client.execute_command("NOSUCHCOMMAND")
    client.execute_command("DEBUG", "SLEEP", "0.01")
    return server


def test_redis_exporter_families_are_all_served(busy_redis, exporter_factory):
    exporter = exporter_factory("--url", f"redis://127.0.0.1:{busy_redis.port}")
    families = exporter.metrics()
    missing = [
        name for name in REDIS_EXPORTER_FAMILIES if name not in families and name not in NOT_SERVED
    ]
    assert missing == []
    assert value(families, "redis_up") == 1
    assert value(families, "redis_db_keys", db="db0") == 1
    assert value(families, "redis_db_keys", db="db15") == 0  # empty databases too
    assert value(families, "redis_commands_total", cmd="get") == 2
    assert value(families, "redis_keyspace_misses_total") == 1
    assert value(families, "redis_errors_total", err="ERR") >= 1
    assert value(families, "redis_latency_percentiles_usec", cmd="get", quantile="99") > 0
    assert value(families, "redis_latency_spike_duration_seconds", event_name="command") > 0
    assert value(families, "redis_slowlog_length") > 0
    assert "redis_commands_latencies_usec_bucket" in families
    # Fields redis_exporter drops are served too.
    assert "redis_instantaneous_ops_per_sec" in families
    # Connections are aggregated, never one series per connection.
    assert "redis_connected_client_info" not in families
    assert value(families, "redkeep_client_connections", user="default", name="") >= 1
    for collector in ("config", "info", "slowlog", "latency", "clients", "acl_log"):
        assert value(families, "redkeep_exporter_collector_success", collector=collector) == 1


def test_keyspace_is_parsed_by_field_name(busy_redis, exporter_factory):
    """Redis 7.4 adds `subexpiry` as the fourth field; it must not shift into another metric."""
    state = State()
    text = b"# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=5000,subexpiry=3\r\n"
    families = {family.name: family for family in info_parse(state, [text])}
    assert families["redis_db_keys"].samples == [("", {"db": "db0"}, 10.0)]
    assert families["redis_db_keys_with_expiring_items"].samples == [("", {"db": "db0"}, 3.0)]
    assert families["redis_db_keys_cached"].samples == []
    assert families["redis_db_avg_ttl_seconds"].samples == [("", {"db": "db0"}, 5.0)]


def test_the_bundle_exporter_user_over_mutual_tls(tmp_path, redis_binary, exporter_factory):
    bundle = start_bundle(tmp_path / "b")
    try:
        exporter = exporter_factory("--dir", bundle.root)
        deadline = time.monotonic() + 10
        families = exporter.metrics()
        while "redkeep_tls_certificate_expires_in_seconds" not in families:
            assert time.monotonic() < deadline, "no posture metrics"
            time.sleep(0.2)
            families = exporter.metrics()
        assert value(families, "redis_up") == 1
        for name in REDIS_EXPORTER_FAMILIES:
            if name not in NOT_SERVED and name != "redis_errors_total":
                assert name in families, name
        days = value(families, "redkeep_tls_certificate_expires_in_seconds") / 86400
        assert 360 < days < 366
        assert value(families, "redkeep_unauthenticated_access") == 0
        assert value(families, "redkeep_default_user_enabled") == 0
        assert value(families, "redkeep_users_without_password") == 0
        assert value(families, "redkeep_protected_mode") == 1
        assert all(v == 1 for _, v in families["redkeep_exporter_collector_enabled"])
        # The exporter logs in once and stays connected: no AUTH per scrape.
        # (Other clients - the bundle's own exporter, its probes - connect now and then too.)
        connected = value(families, "redis_connections_received_total")
        for _ in range(20):
            exporter.metrics()
        assert value(exporter.metrics(), "redis_connections_received_total") - connected < 20
    finally:
        stop_bundle(bundle)


def test_a_refused_collector_is_switched_off_once(redis_factory, exporter_factory):
    server = redis_factory(
        [
            "user default off",
            "user watcher on >watch-pw -@all +ping +info +config|get +slowlog +latency +acl|log",
        ]
    )
    exporter = exporter_factory("--url", f"redis://watcher:watch-pw@127.0.0.1:{server.port}")
    for _ in range(4):
        families = exporter.metrics()
    assert value(families, "redis_up") == 1
    assert value(families, "redkeep_exporter_collector_enabled", collector="clients") == 0
    assert "redkeep_client_connections" not in families
    log = exporter.log.read_text()
    assert log.count("collector clients switched off") == 1
    assert "watch-pw" not in log


def test_application_checks_follow_the_data(redis_factory, exporter_factory, tmp_path):
    server = redis_factory()
    client = redis.Redis(port=server.port)
    checks = yaml.safe_load(EXAMPLE_CHECKS.read_text())
    for check in checks["checks"]:
        check["interval_seconds"] = 0.2
    checks["checks"] += [
        {"name": "queue", "type": "list_length", "key": "jobs", "interval_seconds": 0.2},
        {"name": "events", "type": "stream_length", "key": "ev", "interval_seconds": 0.2},
        {"name": "token", "type": "ttl", "key": "token", "interval_seconds": 0.2},
        {"name": "flag", "type": "exists", "key": "flag", "interval_seconds": 0.2},
        {
            "name": "sum",
            "type": "lua",
            "script": "return redis.call('LLEN', KEYS[1]) * 2",
            "keys": ["jobs"],
            "interval_seconds": 0.2,
        },
    ]
    checks_file = tmp_path / "checks.yaml"
    checks_file.write_text(yaml.safe_dump(checks))
    client.hset("market:status", "updated_at", int(time.time()) - 30)
    client.hset("stats:session_cache", mapping={"hits": 90, "misses": 10})
    client.hset("stats:tx_cache", mapping={"hits": 5, "misses": 5})
    for i in range(7):
        client.set(f"ratelimit:{i}", 1)
    client.rpush("jobs", "a", "b")
    client.xadd("ev", {"x": 1})
    client.set("token", "t", ex=100)
    exporter = exporter_factory(
        "--url", f"redis://127.0.0.1:{server.port}", "--checks", checks_file
    )

    def current():
        deadline = time.monotonic() + 10
        while True:
            families = exporter.metrics()
            if len(families.get("redkeep_check_success", [])) == 9:
                return families
            assert time.monotonic() < deadline, families.get("redkeep_check_success")
            time.sleep(0.2)

    families = current()
    age = value(families, "redkeep_check_key_age_seconds", check="market_data_freshness")
    assert 29 <= age < 40
    assert (
        value(families, "redkeep_check_hash_counter_total", check="session_cache", field="hits")
        == 90
    )
    assert value(families, "redkeep_check_keys", check="rate_limiter_buckets") == 7
    assert value(families, "redkeep_check_list_length", check="queue") == 2
    assert value(families, "redkeep_check_stream_length", check="events") == 1
    assert 90 < value(families, "redkeep_check_ttl_seconds", check="token") <= 100
    assert value(families, "redkeep_check_key_exists", check="flag") == 0
    assert value(families, "redkeep_check_lua_value", check="sum") == 4
    client.hset("market:status", "updated_at", int(time.time()))
    client.hincrby("stats:session_cache", "hits", 10)
    client.set("ratelimit:new", 1)
    client.set("flag", 1)
    time.sleep(1.5)
    families = exporter.metrics()
    assert value(families, "redkeep_check_key_age_seconds", check="market_data_freshness") < 5
    assert (
        value(families, "redkeep_check_hash_counter_total", check="session_cache", field="hits")
        == 100
    )
    assert value(families, "redkeep_check_keys", check="rate_limiter_buckets") == 8
    assert value(families, "redkeep_check_key_exists", check="flag") == 1


def test_a_hung_check_never_delays_metrics(redis_factory, exporter_factory, tmp_path):
    server = redis_factory()
    for i in range(50):
        redis.Redis(port=server.port).set(f"ratelimit:{i}", 1)
    proxy = FreezableProxy(server.port)
    checks = tmp_path / "checks.yaml"
    checks.write_text(
        yaml.safe_dump(
            {
                "checks": [
                    {
                        "name": "buckets",
                        "type": "key_count",
                        "pattern": "ratelimit:*",
                        "interval_seconds": 0.2,
                    }
                ]
            }
        )
    )
    exporter = exporter_factory(
        "--url",
        f"redis://127.0.0.1:{server.port}",
        "--checks",
        checks,
        "--checks-url",
        f"redis://127.0.0.1:{proxy.port}",
    )
    deadline = time.monotonic() + 10
    while "redkeep_check_keys" not in exporter.metrics():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proxy.frozen.set()  # the checks' connection now hangs mid-SCAN
    try:
        # Each scrape must answer while the check hangs: a 1 s client timeout is far below the
        # checks' 2 s budget, so a scrape that waited for the check would fail here.
        for _ in range(10):
            status, body, _ = exporter.get(timeout=1.0)
            families = parse(body)
            assert value(families, "redis_up") == 1
            assert value(families, "redkeep_check_keys", check="buckets") == 50  # last result
        deadline = time.monotonic() + 15
        while value(exporter.metrics(), "redkeep_check_success", check="buckets") != 0:
            assert time.monotonic() < deadline, "the hung check was never reported"
            time.sleep(0.2)
    finally:
        proxy.frozen.clear()


def test_a_stalled_redis_gives_a_partial_answer_within_the_scrape_timeout(
    redis_factory, exporter_factory
):
    server = redis_factory()
    exporter = exporter_factory("--url", f"redis://127.0.0.1:{server.port}")
    assert value(exporter.metrics(), "redis_up") == 1
    os.kill(server.pid, signal.SIGSTOP)
    try:
        # Prometheus would wait 1.5 s; the client here gives up after 5 s, so an exporter that
        # ignored the header and waited for Redis would fail this request.
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
        status, body, _ = exporter.get(headers=headers, timeout=5)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert status == 200
    families = parse(body)
    assert value(families, "redis_up") == 0
    assert value(families, "redis_exporter_last_scrape_error", err="timeout") == 1
    assert value(exporter.metrics(), "redis_up") == 1  # and it reconnects afterwards


def test_scrape_endpoint_serves_only_listed_targets_with_their_own_credentials(
    redis_factory, exporter_factory, tmp_path
):
    main = redis_factory(["user default off", "user exporter on >main-pw ~* +@all"])
    other = redis_factory(["user default off", "user exporter on >other-pw ~* +@all"])
    stranger = redis_factory()
    bundle_dir = tmp_path / "b"
    assert run_redkeep("init", bundle_dir).returncode == 0
    config = yaml.safe_load((bundle_dir / "redkeep.yaml").read_text())
    config["exporter"]["targets"] = [{"url": f"redis://127.0.0.1:{other.port}", "profile": "other"}]
    config["exporter"]["profiles"] = {"other": {"username": "exporter", "password_env": "OTHER_PW"}}
    (bundle_dir / "redkeep.yaml").write_text(yaml.safe_dump(config))
    exporter = exporter_factory(
        "--dir",
        bundle_dir,
        "--url",
        f"redis://exporter:main-pw@127.0.0.1:{main.port}",
        env={"OTHER_PW": "other-pw"},
    )
    status, body, _ = exporter.get(f"/scrape?target=redis://127.0.0.1:{other.port}")
    assert status == 200
    assert value(parse(body), "redis_up") == 1
    assert value(parse(body), "redis_instance_info", tcp_port=str(other.port)) == 1
    for refused in (
        f"redis://127.0.0.1:{stranger.port}",
        f"redis://exporter:main-pw@127.0.0.1:{other.port}",
        "redis://169.254.169.254:80",
    ):
        status, body, _ = exporter.get(f"/scrape?target={refused}")
        assert status == 403, refused
    assert value(exporter.metrics(), "redis_target_scrape_request_errors_total") == 3


def test_http_basic_auth_tls_and_headers(tmp_path, redis_binary, exporter_factory, pki):
    bundle = start_bundle(tmp_path / "web")
    try:
        config = yaml.safe_load((bundle.root / "redkeep.yaml").read_text())
        config["exporter"].update(
            basic_auth_user="prometheus",
            tls_cert_file="tls/server.crt",
            tls_key_file="tls/server.key",
        )
        (bundle.root / "redkeep.yaml").write_text(yaml.safe_dump(config))
        exporter = exporter_factory(
            "--dir",
            bundle.root,
            env={"EXPORTER_BASIC_AUTH_PASSWORD": "scrape-secret"},
            scheme="https",
        )
        context = ssl.create_default_context(cafile=str(bundle.tls.ca_cert))
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

        def get(headers):
            request = urllib.request.Request(exporter.url + "/metrics", headers=headers)
            try:
                with opener.open(request, timeout=20) as response:
                    return response.status, dict(response.headers)
            except urllib.error.HTTPError as error:
                return error.code, dict(error.headers)

        status, headers = get({})
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        wrong = base64.b64encode(b"prometheus:nope").decode()
        assert get({"Authorization": f"Basic {wrong}"})[0] == 401
        right = base64.b64encode(b"prometheus:scrape-secret").decode()
        status, headers = get({"Authorization": f"Basic {right}"})
        assert status == 200
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert "Strict-Transport-Security" in headers
        assert "scrape-secret" not in exporter.log.read_text()
    finally:
        stop_bundle(bundle)


def test_status_page_and_health(busy_redis, exporter_factory):
    exporter = exporter_factory("--url", f"redis://127.0.0.1:{busy_redis.port}")
    exporter.metrics()
    status, page, headers = exporter.get("/")
    assert status == 200 and "redkeep exporter" in page and "collector info" in page
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert exporter.get("/health")[:2] == (200, "ok\n")
    assert exporter.get("/nothing")[0] == 404


def test_every_part_reports_whether_it_is_enabled_and_worked(redis_factory, tmp_path):
    """The audit's textfile part has self-metrics like the others, and a broken file says so."""
    server = redis_factory()
    metrics_dir = tmp_path / "run" / "metrics"
    metrics_dir.mkdir(parents=True)
    report = AuditReport(target="redis://x", counts=dict.fromkeys(SEVERITIES, 0), score=97)
    write_audit_metrics(metrics_dir / "redkeep_audit.prom", [report])
    scraper = Scraper(
        Target("redis", "127.0.0.1", server.port), backup_metrics=metrics_dir / "b.prom"
    )
    families = parse(scraper.scrape(5.0))
    assert value(families, "redkeep_audit_score", target="redis://x") == 97
    for part in ("posture", "background", "backup", "audit"):
        assert value(families, "redkeep_exporter_collector_enabled", collector=part) == 1
        assert value(families, "redkeep_exporter_collector_success", collector=part) == 1
    (metrics_dir / "redkeep_audit.prom").write_text('redkeep_audit_score{target="x"} oops\n')
    families = parse(scraper.scrape(5.0))
    assert value(families, "redkeep_exporter_collector_success", collector="audit") == 0
    assert value(families, "redis_up") == 1  # a broken part costs only its own metrics
    scraper.close()
