"""`redkeep init`: what it keeps, refuses and repairs on existing directories; the bundle as
its ecosystem's tools see it (promtool, amtool, the Compose schema, nginx); image/'s wheel;
and a re-init that redis-server refuses, which must change no file."""

import base64
import copy
import csv
import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import time
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest
import yaml
from jsonschema import Draft7Validator

import redkeep
from redkeep import __version__
from redkeep.bundle import Bundle
from redkeep.config.schema import MonitoringSettings
from redkeep.fsutil import mode_of
from redkeep.monitoring.rules import alerts
from redkeep.pki import issue
from redkeep.pki.files import write_pair
from redkeep.redis.target import parse_host_port
from redkeep.render import nodes as bundle_nodes
from redkeep.render.acl import hashes_in, password_hash
from redkeep.render.image import dependencies, package_files
from tests.conftest import run_redkeep
from tests.servers import free_port, process_alive, require_binary, wait_for_exit

# The Compose Specification's JSON schema (see tests/data/README.md).
COMPOSE_SCHEMA = Path(__file__).parents[1] / "data" / "compose-spec.json"


def make(tmp_path, name="b"):
    root = tmp_path / name
    result = run_redkeep("init", root)
    assert result.returncode == 0, result.stderr
    return Bundle(root)


def test_force_refuses_a_ca_certificate_without_its_key(tmp_path, redis_binary):
    bundle = make(tmp_path)
    bundle.tls.ca_key.unlink()
    before = {path.name: path.read_bytes() for path in bundle.tls.directory.iterdir()}
    result = run_redkeep("init", bundle.root, "--force")
    assert result.returncode == 2
    assert f"{bundle.tls.ca_cert} exists but {bundle.tls.ca_key} does not" in result.stderr
    assert {path.name: path.read_bytes() for path in bundle.tls.directory.iterdir()} == before


def test_force_reissues_a_leaf_the_ca_did_not_sign(tmp_path, redis_binary):
    bundle = make(tmp_path)
    now = dt.datetime.now(dt.UTC)
    stranger = issue.make_ca("Stranger", "ecdsa-p256", 10, now)
    cert, key = issue.make_client_cert(*stranger, "x", "ecdsa-p256", 10, now)
    write_pair(bundle.tls.client_cert(), bundle.tls.client_key(), cert, key)
    server_before = bundle.tls.server_cert.read_bytes()
    result = run_redkeep("init", bundle.root, "--force")
    assert result.returncode == 0, result.stderr
    assert "issued client certificate" in result.stdout
    assert bundle.tls.server_cert.read_bytes() == server_before  # still good: kept
    verify = run_redkeep("certs", "verify", "--dir", bundle.root)
    assert verify.returncode == 0, verify.stdout


def test_force_keeps_password_hashes_already_in_the_acl_file(tmp_path, redis_binary):
    bundle = make(tmp_path)
    old_backup = bundle.password("backup")
    lines = bundle.env_path.read_text().splitlines()
    bundle.env_path.write_text(
        "\n".join(line for line in lines if not line.startswith("REDIS_BACKUP_PASSWORD=")) + "\n"
    )
    result = run_redkeep("init", bundle.root, "--force")
    assert result.returncode == 0, result.stderr
    assert "stay valid next to the new ones" in result.stdout
    new_backup = bundle.password("backup")
    assert new_backup != old_backup
    hashes = hashes_in(bundle.acl_path.read_text())
    assert hashes["backup"] == [password_hash(new_backup), password_hash(old_backup)]
    assert hashes["admin"] == [password_hash(bundle.password("admin"))]


def test_init_into_an_existing_shared_directory_keeps_its_mode(tmp_path, redis_binary):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    result = run_redkeep("init", shared)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert mode_of(shared / ".env") == 0o600


def test_unusable_files_give_one_line(tmp_path, redis_binary):
    bundle = make(tmp_path)
    bundle.env_path.unlink()
    bundle.env_path.mkdir(mode=0o700)
    result = run_redkeep("users", "list", "--dir", bundle.root)
    assert result.returncode == 1
    assert result.stderr.strip() == f"redkeep: error: {bundle.env_path}: Is a directory"


def test_world_readable_secrets_are_warned_about(tmp_path, redis_binary):
    bundle = make(tmp_path)
    bundle.env_path.chmod(0o644)
    result = run_redkeep("config", "show", "--dir", bundle.root)
    assert result.returncode == 0
    assert (
        f"warning: {bundle.env_path} is readable by others (mode 644); chmod 600 it"
        in result.stderr
    )


# --- the bundle as its ecosystem's own tools see it -----------------------------------------


@pytest.fixture(scope="module")
def fresh_bundle(tmp_path_factory, redis_binary) -> tuple[Bundle, str]:
    """A bundle exactly as `redkeep init` writes it, and what init printed."""
    root = tmp_path_factory.mktemp("fresh") / "b"
    result = run_redkeep("init", root)
    assert result.returncode == 0, result.stderr
    return Bundle(root), result.stdout


def tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_binary(name), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_promtool_and_amtool_accept_the_bundle_as_written(fresh_bundle, tmp_path):
    root = fresh_bundle[0].root
    # From another directory: relative paths must resolve against the config file's.
    prometheus = tool("promtool", "check", "config", str(root / "prometheus/prometheus.yml"),
                      cwd=tmp_path)  # fmt: skip
    assert prometheus.returncode == 0, prometheus.stdout + prometheus.stderr
    assert "SUCCESS: 1 rule files found" in prometheus.stdout
    assert f"SUCCESS: {len(alerts(MonitoringSettings()))} rules found" in prometheus.stdout
    alertmanager = tool("amtool", "check-config", str(root / "alertmanager/alertmanager.yml"),
                        cwd=tmp_path)  # fmt: skip
    assert alertmanager.returncode == 0, alertmanager.stdout + alertmanager.stderr
    assert "SUCCESS" in alertmanager.stdout


def test_compose_file_follows_the_compose_specification(fresh_bundle):
    validator = Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    compose = yaml.safe_load((fresh_bundle[0].root / "docker-compose.yml").read_text())
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(compose)
    ]
    assert errors == []
    # The schema sees what Compose would refuse: a misspelt key in a health check.
    misspelt = copy.deepcopy(compose)
    misspelt["services"]["redis"]["healthcheck"]["retrys"] = 5
    assert not validator.is_valid(misspelt)


def host_path(root: Path, service: dict, container_path: PurePosixPath) -> Path:
    """Where a path inside the service's container is on the host, by its volumes."""
    mounts = [volume.split(":")[:2] for volume in service.get("volumes", [])]
    matches = [
        (PurePosixPath(target), source)
        for source, target in mounts
        if container_path.is_relative_to(PurePosixPath(target))
    ]
    assert matches, f"{container_path} is on no volume"
    target, source = max(matches, key=lambda match: len(match[0].parts))  # the innermost
    return root / source / container_path.relative_to(target)


def test_compose_mounts_put_every_file_a_config_names_where_it_points(fresh_bundle):
    root = fresh_bundle[0].root
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    # Prometheus reads /etc/prometheus/prometheus.yml (the image's default); its rule files
    # are relative to that file, on the host and in the container alike.
    config = PurePosixPath("/etc/prometheus/prometheus.yml")
    assert host_path(root, services["prometheus"], config) == root / "prometheus/prometheus.yml"
    rule_files = yaml.safe_load((root / "prometheus/prometheus.yml").read_text())["rule_files"]
    for rule_file in rule_files:
        assert not PurePosixPath(rule_file).is_absolute()
        assert host_path(root, services["prometheus"], config.parent / rule_file).is_file()
    alertmanager = PurePosixPath("/etc/alertmanager/alertmanager.yml")
    assert host_path(root, services["alertmanager"], alertmanager).is_file()
    # Grafana resolves its dashboard path against its working directory: absolute, mounted.
    provider = PurePosixPath("/etc/grafana/provisioning/dashboards/redkeep.yml")
    provider_file = host_path(root, services["grafana"], provider)
    (options,) = [
        item["options"] for item in yaml.safe_load(provider_file.read_text())["providers"]
    ]
    dashboards = host_path(root, services["grafana"], PurePosixPath(options["path"]))
    assert (dashboards / "redkeep.json").is_file()
    # Redis resolves paths against its working directory too: absolute, and all mounted.
    redis_service = services["redis"]
    conf = host_path(root, redis_service, PurePosixPath(redis_service["command"][1]))
    named = {
        name: value
        for name, _, value in (line.partition(" ") for line in conf.read_text().splitlines())
        if name in ("aclfile", "tls-cert-file", "tls-key-file", "tls-ca-cert-file", "dir")
    }
    assert len(named) == 5
    for value in named.values():
        assert host_path(root, redis_service, PurePosixPath(value)).exists(), value


def test_nginx_config_names_the_bundle_files_relative_to_itself(fresh_bundle):
    root = fresh_bundle[0].root
    conf = (root / "nginx/redis-stream.conf").read_text()
    named = [
        line.split()[1].rstrip(";")
        for line in conf.splitlines()
        if line.split() and line.split()[0].endswith(("_certificate", "_certificate_key"))
    ]
    assert len(named) == 6 and str(root) not in "".join(named)
    # nginx resolves them against the directory of the -c file: nginx/.
    assert all((root / "nginx" / path).is_file() for path in named), named


# --- image/: a wheel of redkeep and a Dockerfile --------------------------------------------


def test_image_holds_a_wheel_of_this_redkeep_and_a_dockerfile_that_installs_it(
    fresh_bundle, tmp_path
):
    bundle, output = fresh_bundle
    image = bundle.root / "image"
    wheel = image / f"redkeep-{__version__}-py3-none-any.whl"
    assert sorted(path.name for path in image.iterdir()) == ["Dockerfile", wheel.name]
    dockerfile = (image / "Dockerfile").read_text()
    assert f"COPY {wheel.name} /tmp/\n" in dockerfile
    assert f"RUN pip install --no-cache-dir /tmp/{wheel.name}" in dockerfile
    assert 'ENTRYPOINT ["redkeep"]' in dockerfile
    # Every file of the running package, byte for byte, and its dependencies and command.
    with zipfile.ZipFile(wheel) as archive:
        packaged = {
            name.removeprefix("redkeep/"): archive.read(name)
            for name in archive.namelist()
            if name.startswith("redkeep/")
        }
        info = f"redkeep-{__version__}.dist-info"
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in archive.read(f"{info}/METADATA").decode().splitlines()
            if line.startswith("Requires-Dist: ")
        ]
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert packaged == dict(package_files())
    assert "redkeep = redkeep.cli:main" in entry_points
    assert set(requires) == set(dependencies(metadata.distribution("redkeep")))
    # init names directories, not each file.
    (wrote,) = [line for line in output.splitlines() if line.strip().startswith("wrote ")]
    assert "image/" in wrote and "redis/" in wrote and "prometheus/" in wrote
    assert "image/Dockerfile" not in wrote and ".py" not in wrote
    # pip installs it, and the redkeep it installs runs.
    target = tmp_path / "installed"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    ran = subprocess.run(
        [sys.executable, "-c", "import redkeep.cli, sys; print(redkeep.__file__)"],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == str(target / "redkeep" / "__init__.py")


def python_with(tmp_path: Path, paths: list[Path]) -> Path:
    """A Python of its own (no pip, no setuptools) that sees only `paths` besides its site."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "paths.pth").write_text("".join(f"{path}\n" for path in paths))
    return venv / "bin" / "python"


def this_venvs_packages(tmp_path: Path, leave_out: tuple[str, ...]) -> Path:
    """This virtualenv's installed packages, as links, without the named ones."""
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(leave_out):
            (deps / entry.name).symlink_to(entry)
    return deps


def record_is_true(archive: zipfile.ZipFile) -> bool:
    """Every file of a wheel is in its RECORD with its SHA-256 and size."""
    (record,) = [name for name in archive.namelist() if name.endswith(".dist-info/RECORD")]
    rows = {row[0]: row[1:] for row in csv.reader(archive.read(record).decode().splitlines())}
    for name in archive.namelist():
        if name == record:
            continue
        data = archive.read(name)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if rows.get(name) != [f"sha256={digest}", str(len(data))]:
            return False
    return set(rows) == set(archive.namelist())


def test_a_redkeep_installed_from_its_wheel_renders_a_bundle(fresh_bundle, tmp_path):
    wheel = next((fresh_bundle[0].root / "image").glob("*.whl"))
    # pip installs the wheel (RECORD and all) into a Python that has the dependencies but
    # neither this source tree nor setuptools. (--target: --prefix would uninstall ours.)
    deps = this_venvs_packages(
        tmp_path, ("redkeep", "__editable__", "setuptools", "_distutils_hack", "pkg_resources")
    )
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", str(site), str(wheel)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    python = python_with(tmp_path, [site, deps])
    where = subprocess.run(
        [python, "-c", "import redkeep; print(redkeep.__file__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.strip() == str(site / "redkeep" / "__init__.py")
    result = subprocess.run(
        [python, "-m", "redkeep", "init", str(tmp_path / "b")],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "REDKEEP_EXPORTER__LISTEN": f"127.0.0.1:{free_port()}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rendered = tmp_path / "b" / "image" / wheel.name
    with zipfile.ZipFile(rendered) as again, zipfile.ZipFile(wheel) as original:
        assert sorted(again.namelist()) == sorted(original.namelist())
        for name in original.namelist():
            if not name.endswith("/RECORD"):
                assert again.read(name) == original.read(name), name
        assert record_is_true(again)


@pytest.mark.parametrize(
    ("with_metadata", "says"),
    [
        (False, "this redkeep has no package metadata"),
        (True, "setuptools is not installed in redkeep's environment"),
    ],
    ids=["bare copy of the source", "editable install without setuptools"],
)
def test_a_redkeep_that_cannot_make_its_wheel_says_what_to_do(tmp_path, with_metadata, says):
    leave_out = ("redkeep", "__editable__", "setuptools", "_distutils_hack", "pkg_resources")
    deps = this_venvs_packages(tmp_path, leave_out)
    if with_metadata:  # an editable install's metadata: its RECORD lists no package files
        (info,) = Path(sysconfig.get_paths()["purelib"]).glob("redkeep-*.dist-info")
        (deps / info.name).symlink_to(info)
    source = tmp_path / "source"  # the package alone (src/ also holds an egg-info)
    shutil.copytree(Path(redkeep.__file__).parent, source / "redkeep")
    python = python_with(tmp_path, [source, deps])
    result = subprocess.run(
        [python, "-m", "redkeep", "init", str(tmp_path / "b")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()  # a failed first init leaves nothing behind


def test_force_replaces_an_old_image_context_with_the_wheel(tmp_path, redis_binary):
    bundle = make(tmp_path)
    image = bundle.root / "image"
    (image / "src" / "redkeep").mkdir(parents=True)
    (image / "src" / "redkeep" / "__init__.py").write_text("")
    (image / "pyproject.toml").write_text("[project]\n")
    (image / "redkeep-0.0.1-py3-none-any.whl").write_bytes(b"an older release")
    (image / "NOTES.md").write_text("the operator's own files stay\n")
    (image / "plugin-1.0-py3-none-any.whl").write_bytes(b"")
    result = run_redkeep("init", bundle.root, "--force")
    assert result.returncode == 0, result.stderr
    names = sorted(path.name for path in image.iterdir())
    current = f"redkeep-{__version__}-py3-none-any.whl"
    assert names == ["Dockerfile", "NOTES.md", "plugin-1.0-py3-none-any.whl", current]


# --- init --force checks before it writes ---------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every file and directory under `root`: bytes (None for a directory) and mode."""
    return {
        str(path.relative_to(root)): (None if path.is_dir() else path.read_bytes(), mode_of(path))
        for path in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(
    ("section", "name", "value", "says"),
    [
        ("users", "app", {"commands": ["+get", "+nosuchcommand"]},
         "users.acl:3: Error in applying operation '+nosuchcommand'"),
        ("tls", "ciphers", "NO-SUCH-CIPHER", "Failed to configure ciphers: NO-SUCH-CIPHER"),
    ],
    ids=["refused in users.acl", "refused in redis.conf"],
)  # fmt: skip
def test_a_force_reinit_redis_server_refuses_changes_no_file(
    tmp_path, redis_binary, section, name, value, says
):
    bundle = make(tmp_path)
    config = yaml.safe_load(bundle.config_path.read_text())
    config[section][name] = value
    bundle.config_path.write_text(yaml.safe_dump(config))
    before = snapshot(bundle.root)
    result = run_redkeep("init", bundle.root, "--force")
    assert result.returncode == 2
    assert says in result.stderr and "nothing was written" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(bundle.root) == before


def test_a_first_init_redis_server_refuses_leaves_nothing(tmp_path, redis_binary):
    result = run_redkeep("init", tmp_path / "b", env={"REDKEEP_TLS__CIPHERS": "NO-SUCH-CIPHER"})
    assert result.returncode == 2
    assert "Failed to configure ciphers" in result.stderr
    assert not (tmp_path / "b").exists()


def test_an_age_recipient_that_is_not_one_is_refused_and_the_bundle_keeps_its_own(
    tmp_path, redis_binary
):
    bundle = make(tmp_path)
    before = snapshot(bundle.root)
    forced = run_redkeep(
        "init", bundle.root, "--force", env={"REDKEEP_BACKUP__AGE_RECIPIENTS": '["age1bogus"]'}
    )
    assert forced.returncode == 2
    assert "backup.age_recipients" in forced.stderr and "age1bogus" in forced.stderr
    assert snapshot(bundle.root) == before  # the bundle's own recipient is still there
    # A file that names one fails validation with the same message.
    config = yaml.safe_load(bundle.config_path.read_text())
    good = config["backup"]["age_recipients"][0]
    assert run_redkeep("config", "validate", bundle.config_path).returncode == 0
    for bad in ("age1bogus", good[:-1] + ("q" if good[-1] != "q" else "p"), "ssh-ed25519 AAAA"):
        config["backup"]["age_recipients"] = [bad]
        bundle.config_path.write_text(yaml.safe_dump(config))
        validate = run_redkeep("config", "validate", bundle.config_path)
        assert validate.returncode == 2, bad
        assert "is not an age public key" in validate.stderr, validate.stderr


def test_the_check_server_dies_with_a_killed_init(tmp_path):
    """init's throw-away redis-server must not outlive it: a SIGKILLed init used to leave
    servers behind that ignored SIGTERM (their final save failed in a removed temp dir)."""
    binary = require_binary("redis-server")
    conf = tmp_path / "redis.conf"
    conf.write_text(
        f"port 0\nunixsocket {tmp_path}/check.sock\nunixsocketperm 700\ndir {tmp_path}\n"
        f"logfile {tmp_path}/redis.log\nsave 3600 1\n"
    )
    # The check waits for an answer on a socket nobody serves: it runs until killed.
    script = (
        "import sys; from pathlib import Path; from redkeep.actions.init import _started; "
        "_started(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))"
    )
    init = subprocess.Popen(
        [sys.executable, "-c", script, binary, str(conf), str(tmp_path / "nobody.sock")]
    )
    deadline = time.monotonic() + 20
    children: list[int] = []
    while not children:
        assert init.poll() is None and time.monotonic() < deadline, "no check server seen"
        children = [
            int(pid)
            for task in Path(f"/proc/{init.pid}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
    (server,) = children
    socket_path = tmp_path / "check.sock"
    while not socket_path.exists():  # it is a redis-server that has started
        assert time.monotonic() < deadline, (tmp_path / "redis.log").read_text()
        time.sleep(0.02)
    init.send_signal(signal.SIGKILL)
    init.wait()
    assert wait_for_exit(server), "the check server outlived init"
    assert not process_alive(server)


def test_helper_ports_follow_the_tls_port(tmp_path, cli):
    """Two bundles a few TLS ports apart share no port: the proxy, its metrics and the
    exporter keep their distance from the default TLS port; a port set by the user stays."""

    def ports(root: Path) -> set[int]:
        settings = Bundle(root).settings
        nodes = {node.port for node in bundle_nodes.planned(settings)}
        helpers = (settings.proxy.listen, settings.proxy.metrics_listen, settings.exporter.listen)
        return nodes | {parse_host_port(listen)[1] for listen in helpers}

    made = {}
    for name, args in {
        "default": (),
        "a": ("--tls-port", "7000"),
        "b": ("--tls-port", "7002"),
        "ha": ("--topology", "sentinel", "--tls-port", "7010"),
    }.items():
        result = cli("init", tmp_path / name, *args)
        assert result.code == 0, result.err
        made[name] = ports(tmp_path / name)
    assert made["default"] == {6380, 6381, 9121, 9122}
    assert made["a"] == {7000, 7001, 9741, 9742}
    assert not made["a"] & made["b"] and not (made["a"] | made["b"]) & made["ha"]
    assert 7009 in made["ha"]  # a sentinel bundle's proxy: just below its nodes
    kept = cli(
        "init", tmp_path / "kept", "--tls-port", "7100",
        env={"REDKEEP_EXPORTER__LISTEN": "127.0.0.1:9500"},
    )  # fmt: skip
    assert kept.code == 0, kept.err
    assert Bundle(tmp_path / "kept").settings.exporter.listen == "127.0.0.1:9500"


def test_init_refuses_a_helper_on_a_node_port_and_nodes_past_the_port_range(tmp_path, cli):
    """A helper port on a node's port (new bundle or --force) and a Sentinel or cluster bus
    past 65535 are refused up front, in one line that names the port and the fix; the bundle
    on disk stays as it was, a new one is not created."""
    root = tmp_path / "s"
    made = cli("init", root, "--topology", "sentinel", "--tls-port", "12300")
    assert made.code == 0, made.err
    assert Bundle(root).settings.proxy.listen == "127.0.0.1:12299"
    files = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    refused = {
        # --force moves the nodes to 12298.., onto the proxy's port.
        "force": (cli("init", root, "--force", "--tls-port", "12298"), "127.0.0.1:12299"),
        # The proxy follows the TLS port to 2, redis-1's; there is no port below 1.
        "port 1": (
            cli("init", tmp_path / "t", "--topology", "sentinel", "--tls-port", "1"),
            "127.0.0.1:2",
        ),
    }
    for name, (result, port) in refused.items():
        assert result.code == 2, (name, result.err)
        assert result.err.count("\n") == 1, result.err
        assert f"proxy.listen {port} is redis-1's port" in result.err, result.err
        assert "choose another --tls-port" in result.err
    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == files
    assert not (tmp_path / "t").exists()

    high = cli("init", tmp_path / "u", "--topology", "sentinel", "--tls-port", "65500")
    assert high.code == 2 and high.err.count("\n") == 1, high.err
    assert "puts sentinel-2 on port 65602, past 65535" in high.err
    assert "Sentinel j listens on tls_port + 100 + j" in high.err and "at most 65433" in high.err
    bus = cli("init", tmp_path / "c", "--topology", "cluster", "--tls-port", "60000")
    assert bus.code == 2 and "redis-5's cluster bus on port 70005" in bus.err, bus.err
    assert "at most 55530" in bus.err
    assert not (tmp_path / "u").exists() and not (tmp_path / "c").exists()
