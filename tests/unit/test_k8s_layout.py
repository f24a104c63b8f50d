"""render/k8s_conf.py: the cluster's slot ranges and the pods' names (pure functions)."""

import pytest

from redkeep.config.schema import Settings
from redkeep.errors import UsageError
from redkeep.render.k8s import K8sOptions, layout_of
from redkeep.render.k8s_conf import CLUSTER_SLOTS, K8sNames, Layout, slot_ranges


@pytest.mark.parametrize("shards", [3, 5, 7, 16])
def test_slot_ranges_cover_every_slot_once(shards):
    ranges = slot_ranges(shards)
    assert len(ranges) == shards
    covered = [slot for first, last in ranges for slot in range(first, last + 1)]
    assert covered == list(range(CLUSTER_SLOTS))
    sizes = [last - first + 1 for first, last in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_pods_follow_the_plan():
    cluster = Settings.model_validate(
        {"deployment": {"topology": "cluster", "shards": 3, "replicas": 2}}
    )
    layout = Layout(cluster, K8sNames("shop"))
    assert layout.data_pods == [f"redis-{i}" for i in range(9)]
    assert layout.data_fqdn("redis-4") == "redis-4.redis.shop.svc.cluster.local"
    assert layout.bus_port == 16380
    standalone = Layout(Settings(), K8sNames("shop", "corp.example"))
    assert standalone.data_pods == ["redis-0"]
    assert standalone.sentinel_pods == []
    sentinel = Layout(
        Settings.model_validate({"deployment": {"topology": "sentinel"}}), K8sNames("shop")
    )
    assert sentinel.data_pods == ["redis-0", "redis-1", "redis-2"]
    assert sentinel.sentinel_fqdn("sentinel-2") == "sentinel-2.sentinel.shop.svc.cluster.local"


@pytest.mark.parametrize(
    ("namespace", "domain"),
    [
        ("x;touch /tmp/pwned;#", "cluster.local"),  # the pods' scripts use it in host names
        ("Prod_NS", "cluster.local"),
        ("a" * 64, "cluster.local"),
        ("", "cluster.local"),
        ("redkeep", 'c.local";id;"'),
        ("redkeep", "a..b"),
    ],
)
def test_a_name_kubernetes_would_refuse_is_a_usage_error(namespace, domain):
    options = K8sOptions(namespace=namespace, domain=domain)
    with pytest.raises(UsageError, match="namespace|cluster domain"):
        layout_of(Settings(), options)


def test_kubernetes_names_are_taken():
    layout = layout_of(Settings(), K8sOptions(namespace="a" * 63, domain="k8s.example.org"))
    assert layout.names.namespace == "a" * 63
