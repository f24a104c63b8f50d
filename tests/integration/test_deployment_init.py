"""`redkeep init --topology sentinel|cluster` as a user runs it: the files on disk, each
node's certificate, a re-render that keeps what the Sentinels wrote into their files, the
compose mounts, and flags that would make a bad or different deployment refused."""

import stat
from pathlib import Path, PurePosixPath

import yaml

from redkeep.bundle import Bundle
from redkeep.envfile import read_env
from redkeep.pki.inspect import load_certificate, subject_alt_names
from tests.conftest import run_redkeep

SENTINELS = ("sentinel-0", "sentinel-1", "sentinel-2")


def init(root: Path, *flags: str) -> str:
    result = run_redkeep("init", root, *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout


def conf_values(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            found.setdefault(name, []).append(value)
    return found


def test_a_sentinel_bundle_on_disk(tmp_path, redis_binary):
    root = tmp_path / "ha"
    output = init(root, "--topology", "sentinel")
    assert "accepts the node configurations" in output  # redis-server checked them
    assert not (root / "nginx").exists()  # nginx cannot follow a failover: no config offered
    bundle = Bundle(root)
    names = ["redis-0", "redis-1", "redis-2", *SENTINELS]
    for name in names:
        cert = load_certificate(bundle.tls.node_cert(name))
        assert subject_alt_names(cert)[0] == name  # what peers and compose dial
        assert stat.S_IMODE(bundle.tls.node_key(name).stat().st_mode) == 0o600
        for path in bundle.node_dir(name).iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert bundle.node_data_dir(name).is_dir()  # compose mounts it; docker must not
    env = read_env(bundle.env_path)
    assert env["REDIS_REPLICATION_PASSWORD"] and env["REDIS_SENTINEL_PASSWORD"]
    assert not (root / "redis/redis.conf").exists()
    deployment = yaml.safe_load(bundle.config_path.read_text())["deployment"]
    assert deployment["topology"] == "sentinel"

    # Every file a node's configuration names is where its compose mounts put it.
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    for name in names:
        service = services[name]
        mounts = dict(volume.split(":")[:2] for volume in service["volumes"])
        inside = {PurePosixPath(target): source for source, target in mounts.items()}
        conf = PurePosixPath(service["command"][1])
        assert host_path(root, inside, conf).is_file()
        values = conf_values(host_path(root, inside, conf))
        for key in ("tls-cert-file", "tls-key-file", "tls-ca-cert-file", "tls-client-cert-file",
                    "dir", "aclfile"):  # fmt: skip
            for value in values.get(key, []):
                assert host_path(root, inside, PurePosixPath(value)).exists(), (name, key)


def host_path(root: Path, inside: dict[PurePosixPath, str], path: PurePosixPath) -> Path:
    matches = [target for target in inside if path.is_relative_to(target)]
    assert matches, f"{path} is on no volume"
    target = max(matches, key=lambda item: len(item.parts))
    return root / inside[target] / path.relative_to(target)


def test_init_force_keeps_what_a_sentinel_learned_and_moves_the_replicas(tmp_path, redis_binary):
    root = tmp_path / "ha"
    init(root, "--topology", "sentinel")
    bundle = Bundle(root)
    path = bundle.node_dir("sentinel-1") / "sentinel.conf"
    text = path.read_text()
    myid = conf_values(path)["sentinel"]
    # As the Sentinel rewrites it after a failover to redis-2 (epoch 4).
    base = bundle.settings.redis.tls_port
    learned = text.replace(f"redis-0 {base} 2", f"redis-2 {base + 2} 2")
    learned = learned.replace("config-epoch redkeep 0", "config-epoch redkeep 4")
    path.write_text(learned + "protected-mode no\n")
    before = (bundle.node_dir("redis-1") / "users.acl").read_text()

    init(root, "--force")
    for name in SENTINELS:
        values = conf_values(bundle.node_dir(name) / "sentinel.conf")["sentinel"]
        assert f"monitor redkeep redis-2 {base + 2} 2" in values, name
        assert "config-epoch redkeep 4" in values
    assert [item for item in conf_values(path)["sentinel"] if item.startswith("myid")] == [
        item for item in myid if item.startswith("myid")
    ]
    for name in ("redis-0", "redis-1"):
        assert conf_values(bundle.node_dir(name) / "redis.conf")["replicaof"] == [
            f"redis-2 {base + 2}"
        ]
    assert "replicaof" not in conf_values(bundle.node_dir("redis-2") / "redis.conf")
    assert (bundle.node_dir("redis-1") / "users.acl").read_text() == before  # secrets kept


def test_bad_deployment_flags_and_a_topology_change_are_refused(tmp_path, redis_binary):
    even = run_redkeep("init", tmp_path / "even", "--topology", "sentinel", "--sentinels", "2")
    assert even.returncode == 2
    assert "odd number" in even.stderr and "--sentinels" in even.stderr
    assert not (tmp_path / "even").exists()  # nothing left behind

    root = tmp_path / "cluster"
    init(root, "--topology", "cluster", "--shards", "3", "--replicas", "1")
    files = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    change = run_redkeep("init", root, "--force", "--topology", "sentinel")
    assert change.returncode == 2
    assert "is a cluster bundle" in change.stderr
    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == files
    acl = (Bundle(root).node_dir("redis-0") / "users.acl").read_text()
    assert "+cluster|nodes" in acl  # the exporter reads each node's slots and links
