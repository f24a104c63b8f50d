"""The exporter on a real Cluster and a real Sentinel group (tests/hanodes.py, TLS and ACL).

Names are judged against redis_exporter 1.45.0 scraping the same node; discovery against the
processes started; the failover against what the servers say after a SIGKILL of the primary
(ROLE on the promoted node), polled with no timing threshold. One deployment of each kind is
shared by the module; the failover tests come last and leave it failed over.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from redkeep.config.schema import MonitoringSettings, Settings
from redkeep.monitoring.dashboard import queries
from redkeep.monitoring.rules import alerts, render_rules
from redkeep.render.monitoring import render_prometheus
from tests.conftest import REDKEEP
from tests.hanodes import (
    PASSWORDS,
    HADeployment,
    wait_until,
)
from tests.integration.exporter.conftest import Exporter, parse, value
from tests.integration.exporter.test_exporter_versions import NOT_SERVED, reference_scrape
from tests.integration.exporter.test_prometheus import concrete, query, ready
from tests.servers import free_port, require_binary

ENV = {"HA_ADMIN_PASSWORD": PASSWORDS["admin"], "REDIS_PASSWORD": PASSWORDS["admin"]}
# What a Sentinel holds no keys for: 1.45.0 serves 16 empty databases on one, redkeep none.
NOT_ON_SENTINEL = ("redis_db_keys", "redis_db_keys_expiring")
# In 1.45.0 the newer Sentinel families (today's redis_exporter: exporter/sentinels.go) are
# missing; redkeep serves them under today's names.
NEWER_SENTINEL = [
    "redis_sentinel_master_setting_ckquorum",
    "redis_sentinel_master_setting_failover_timeout",
    "redis_sentinel_master_setting_parallel_syncs",
    "redis_sentinel_master_setting_down_after_milliseconds",
    "redis_sentinel_master_config_epoch",
    "redis_sentinel_master_last_ok_ping_reply_seconds",
]


def url(deployment: HADeployment, name: str) -> str:
    return f"rediss://localhost:{deployment.server(name).tls_port}"


def every_url(deployment: HADeployment) -> set[str]:
    return {url(deployment, name) for name in {**deployment.nodes, **deployment.sentinels}}


def exporter_for(
    exporter_factory, deployment: HADeployment, seed: str, tmp_path: Path, leave_out=()
) -> Exporter:
    """An exporter seeded at `seed` whose allow-list is every node but `leave_out`."""
    directory = tmp_path / f"exporter-{seed}"
    directory.mkdir(parents=True)
    pki = deployment.pki
    profile = {
        "username": "admin",
        "password_env": "HA_ADMIN_PASSWORD",
        "tls_ca": str(pki.ca_cert),
        "tls_cert": str(pki.client_cert()),
        "tls_key": str(pki.client_key()),
    }
    allowed = sorted(every_url(deployment) - {url(deployment, name) for name in leave_out})
    config = {
        "exporter": {
            "targets": [{"url": target, "profile": "ha"} for target in allowed],
            "profiles": {"ha": profile},
        }
    }
    (directory / "redkeep.yaml").write_text(yaml.safe_dump(config))
    return exporter_factory(
        "--dir", directory, "--url", deployment.url(seed), *deployment.tls_options(), env=ENV
    )


def scrape(exporter: Exporter, target: str) -> dict:
    status, body, _ = exporter.get(f"/scrape?target={target}")
    assert status == 200, body
    return parse(body)


def reference(deployment: HADeployment, name: str, workdir: Path) -> dict:
    pki = deployment.pki
    return reference_scrape(
        0,
        workdir,
        f"-redis.addr={url(deployment, name)}",
        "-redis.user=admin",
        f"-tls-ca-cert-file={pki.ca_cert}",
        f"-tls-client-cert-file={pki.client_cert()}",
        f"-tls-client-key-file={pki.client_key()}",
        env={**os.environ, "REDIS_PASSWORD": PASSWORDS["admin"]},
    )


def missing_from(ours: dict, theirs: dict, also_not: tuple[str, ...] = ()) -> list[str]:
    return sorted(
        name for name in theirs if name not in ours and name not in NOT_SERVED
        and name not in also_not
    )  # fmt: skip


def test_a_cluster_node_serves_what_redis_exporter_serves(cluster, exporter_factory, tmp_path):
    theirs = reference(cluster, "redis-0", tmp_path)
    exporter = exporter_for(exporter_factory, cluster, "redis-0", tmp_path)
    ours = exporter.metrics()
    assert value(theirs, "redis_cluster_state") == 1 and len(theirs) > 100  # it did scrape
    assert missing_from(ours, theirs) == []
    for family in ("redis_cluster_state", "redis_cluster_slots_ok", "redis_cluster_known_nodes"):
        assert value(ours, family) == value(theirs, family), family
    assert value(ours, "redis_cluster_messages_sent_total") > 0
    # The cluster's view of every node, this one included, none failed.
    nodes = {labels for labels, _ in ours["redkeep_cluster_node_failed"]}
    assert len(nodes) == len(cluster.nodes)
    assert {v for _, v in ours["redkeep_cluster_node_failed"]} == {0}


def test_a_sentinel_serves_what_redis_exporter_serves(sentinels, exporter_factory, tmp_path):
    theirs = reference(sentinels, "sentinel-0", tmp_path)
    exporter = exporter_for(exporter_factory, sentinels, "sentinel-0", tmp_path)
    ours = exporter.metrics()
    assert value(theirs, "redis_sentinel_masters") == 1  # it did scrape a Sentinel
    assert missing_from(ours, theirs, NOT_ON_SENTINEL) == []
    for family in ("redis_sentinel_master_ok_sentinels", "redis_sentinel_master_ok_slaves",
                   "redis_sentinel_master_ckquorum_status", "redis_sentinel_tilt"):  # fmt: skip
        assert value(ours, family) == value(theirs, family), family
    primary = f"127.0.0.1:{sentinels.nodes['redis-0'].tls_port}"
    assert value(ours, "redis_sentinel_master_status", master_status="ok") == 1
    for family in NEWER_SENTINEL:
        assert value(ours, family, master_name="ha", master_address=primary) >= 0, family
    assert value(ours, "redis_sentinel_master_setting_down_after_milliseconds") == 1000
    # No command a Sentinel does not know was sent, none failed.
    success = dict(ours["redkeep_exporter_collector_success"])
    assert set(success.values()) == {1}, success
    assert 'collector="config"' not in success


def test_discovery_lists_every_allowed_node_each_scrapable(
    cluster, sentinels, exporter_factory, tmp_path
):
    for deployment, seed in ((cluster, "redis-1"), (sentinels, "sentinel-1")):
        exporter = exporter_for(exporter_factory, deployment, seed, tmp_path)
        status, body, headers = exporter.get("/discover-cluster-nodes")
        assert status == 200 and headers["Content-Type"] == "application/json", body
        (group,) = json.loads(body)
        assert set(group["targets"]) == every_url(deployment)  # Sentinels too
        for target in group["targets"]:
            assert value(scrape(exporter, target), "redis_up") == 1, target

    # A node outside the allow-list is never offered (nor scraped).
    exporter = exporter_for(exporter_factory, cluster, "redis-0", tmp_path / "x", ("redis-2",))
    (group,) = json.loads(exporter.get("/discover-cluster-nodes")[1])
    assert set(group["targets"]) == every_url(cluster) - {url(cluster, "redis-2")}
    assert exporter.get(f"/scrape?target={url(cluster, 'redis-2')}")[0] == 403


def role_of(exporter: Exporter, target: str) -> str:
    families = scrape(exporter, target)
    if value(families, "redis_up") != 1:
        return "down"
    ((labels, _),) = families["redis_instance_info"]
    return labels.split('role="')[1].split('"')[0]


def start_prometheus(
    tmp_path: Path, exporters: dict[str, Exporter]
) -> tuple[str, subprocess.Popen]:
    """Prometheus on the job a HA bundle renders (http_sd from the exporter, /scrape per
    node), one job per exporter, and the bundle's alert rules."""
    rendered = render_prometheus(Settings.model_validate({"deployment": {"topology": "cluster"}}))
    (template,) = [
        j for j in yaml.safe_load(rendered)["scrape_configs"] if j["job_name"] == "redis"
    ]
    jobs = []
    for name, exporter in exporters.items():
        address = exporter.url.removeprefix("http://")
        job = json.loads(json.dumps(template).replace("exporter:9121", address))
        del job["static_configs"]  # the bundle's planned nodes: none of them runs here
        job["job_name"] = name
        job["http_sd_configs"][0]["refresh_interval"] = "2s"
        jobs.append(job)
    rules = tmp_path / "redkeep.rules.yml"
    rules.write_text(render_rules(MonitoringSettings()))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": jobs,
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            require_binary("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    return f"http://127.0.0.1:{port}", process


def move_slot_into(cluster: HADeployment, source: str, destination: str) -> None:
    """Move the first slot of `source` (empty: the module writes no keys there) the way a
    reshard does: IMPORTING, MIGRATING, then SETSLOT NODE on both."""
    clients = {name: cluster.client(name) for name in (source, destination)}
    ids = {name: client.execute_command("CLUSTER MYID") for name, client in clients.items()}
    slot = next(
        start
        for start, _, primary, *_ in clients[source].execute_command("CLUSTER SLOTS")
        if primary[2] == ids[source]
    )
    assert clients[source].execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
    clients[destination].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source])
    clients[source].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[destination])
    for name in (destination, source):  # the new owner first, as a reshard does
        clients[name].execute_command("CLUSTER SETSLOT", slot, "NODE", ids[destination])
    for client in clients.values():
        client.close()


def expr_of(name: str) -> str:
    return next(alert["expr"] for alert in alerts(MonitoringSettings()) if alert["name"] == name)


def test_after_a_sigkill_of_each_primary_the_exporter_and_prometheus_follow_the_failover(
    cluster, sentinels, exporter_factory, tmp_path, record_property
):
    exporters = {
        "cluster": exporter_for(exporter_factory, cluster, "redis-1", tmp_path),
        "sentinel": exporter_for(exporter_factory, sentinels, "sentinel-1", tmp_path),
    }
    prometheus, process = start_prometheus(tmp_path, exporters)
    try:
        # Healthy: every HA alert's signal returns data, from every node discovered.
        signals = {alert["signal"] for alert in alerts(MonitoringSettings()) if "needs" in alert}
        for deployment in ("cluster", "sentinel"):  # and the dashboard's Cluster and Sentinel rows
            signals |= {concrete(q) for q in set(queries(deployment=deployment)) - set(queries())}
        wait_until(lambda: process.poll() is None and ready(prometheus), "prometheus", 60)
        wait_until(
            lambda: (
                all(query(prometheus, signal_) for signal_ in signals)
                and len(query(prometheus, "up == 1"))
                == len(every_url(cluster)) + len(every_url(sentinels))
            ),
            "every HA signal from every node",
            60,
        )
        # A reshard (one slot from redis-1 into redis-0) bumps the config epoch of redis-0 and
        # of its replica redis-3: Prometheus sees it, and it is no failover.
        move_slot_into(cluster, "redis-1", "redis-0")
        wait_until(
            lambda: query(prometheus, "changes(redis_cluster_my_epoch[10m]) > 0"),
            "Prometheus to see the reshard's epoch bump",
        )
        assert query(prometheus, expr_of("RedisClusterFailover")) == []
        # The cluster's redis-3 replicates redis-0; the group's redis-1 replicates redis-0.
        assert role_of(exporters["cluster"], url(cluster, "redis-3")) == "slave"
        assert role_of(exporters["sentinel"], url(sentinels, "redis-1")) == "slave"
        os.kill(cluster.nodes["redis-0"].pid, signal.SIGKILL)
        os.kill(sentinels.nodes["redis-0"].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # down-after (1 s) / node timeout (2 s) + the failover + a scrape: polled, not timed.
        promoted = {"cluster": (cluster, "redis-3"), "sentinel": (sentinels, "redis-1")}
        seconds: dict[str, float] = {}

        def both_promoted() -> bool:
            for kind, (deployment, name) in promoted.items():
                if (
                    kind not in seconds
                    and role_of(exporters[kind], url(deployment, name)) == "master"
                ):
                    seconds[kind] = round(time.monotonic() - killed_at, 2)
            return len(seconds) == len(promoted)

        wait_until(both_promoted, "the exporter to report each promoted node as master")
        for kind, elapsed in seconds.items():  # measured, never asserted (docs/monitoring.md)
            record_property(f"exporter_failover_{kind}_seconds", elapsed)
        new_primary = f"127.0.0.1:{sentinels.nodes['redis-1'].tls_port}"
        sentinel_view = scrape(exporters["sentinel"], url(sentinels, "sentinel-1"))
        assert value(sentinel_view, "redis_sentinel_master_config_epoch") >= 1
        assert value(sentinel_view, "redis_sentinel_master_status", master_address=new_primary)

        # The killed primary: down for its own scrape, failed in the cluster's view.
        killed = f"127.0.0.1:{cluster.nodes['redis-0'].tls_port}"
        assert value(scrape(exporters["cluster"], url(cluster, "redis-0")), "redis_up") == 0
        wait_until(
            lambda: (
                value(
                    scrape(exporters["cluster"], url(cluster, "redis-1")),
                    "redkeep_cluster_node_failed",
                    node=killed,
                )
                == 1
            ),
            "the cluster to mark the killed primary failed",
        )
        # And the alerts' expressions return data on Prometheus.
        for name, labels in (
            ("RedisClusterFailover", {"instance": url(cluster, "redis-3")}),
            ("RedisSentinelFailover", {"master_name": "ha"}),
            ("RedisClusterNodeFailed", {"node": killed}),
            ("RedisDown", {"instance": url(cluster, "redis-0")}),
        ):
            wait_until(
                lambda name=name, labels=labels: any(
                    labels.items() <= series["metric"].items()
                    for series in query(prometheus, expr_of(name))
                ),
                f"{name}'s expression to return {labels}",
            )
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_cluster_bundle_exporter_needs_no_main_node_and_allows_the_planned_ones(
    exporter_factory, tmp_path
):
    """Nothing runs here: what the exporter accepts is judged, not what it reads."""
    root = tmp_path / "bundle"
    port = free_port()
    init = subprocess.run(
        [REDKEEP, "init", str(root), "--topology", "cluster", "--tls-port", str(port)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    exporter = exporter_factory("--dir", root)
    # No one main node in a cluster: /metrics holds only what is the deployment's own.
    status, body, _ = exporter.get("/metrics")
    assert status == 200 and "redis_up" not in parse(body)
    assert value(parse(body), "redkeep_exporter_collector_success", collector="backup") == 1
    planned = f"rediss://localhost:{port + 5}"  # redis-5, the last replica
    status, body, _ = exporter.get(f"/scrape?target={planned}")
    assert status == 200 and value(parse(body), "redis_up") == 0  # allowed, not running
    assert exporter.get(f"/scrape?target=rediss://localhost:{port + 6}")[0] == 403
    assert exporter.get("/discover-cluster-nodes")[0] == 503  # no node answers
