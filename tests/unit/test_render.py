from pathlib import Path

import pytest
import yaml

from redkeep.config.schema import Settings
from redkeep.render.acl import password_hash, render_acl
from redkeep.render.bundle import bundle_files, render_compose
from redkeep.render.redis_conf import (
    CONTAINER_BIND,
    CONTAINER_PATHS,
    image_version,
    local_paths,
    render_redis_conf,
)

PASSWORDS = {role: f"{role}-secret-{'x' * 40}" for role in ("admin", "app", "exporter", "backup")}


def directives(conf: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in conf.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            found.setdefault(name, []).append(value)
    return found


def container_conf(settings=None) -> str:
    settings = settings or Settings()
    return render_redis_conf(settings, CONTAINER_PATHS, (7, 4), CONTAINER_BIND, "test")


def test_redis_conf_is_tls_only_and_hardened():
    conf = directives(container_conf())
    expected = {
        "port": "0",
        "tls-port": "6380",
        "tls-protocols": '"TLSv1.2 TLSv1.3"',
        "tls-auth-clients": "yes",
        "tls-replication": "yes",
        "protected-mode": "yes",
        "enable-debug-command": "no",
        "enable-module-command": "no",
        "enable-protected-configs": "no",
        "maxmemory": "256mb",
        "maxmemory-policy": "allkeys-lru",
        "maxmemory-clients": "67108864",  # auto: a quarter of 256mb, 64 MiB
        "client-output-buffer-limit": "normal 64mb 0 0",
        "timeout": "300",
        "tcp-keepalive": "300",
        "acllog-max-len": "256",
        "appendonly": "yes",
        "aclfile": "/usr/local/etc/redis/users.acl",
        "tls-cert-file": "/tls/server.crt",
    }
    for name, value in expected.items():
        assert conf[name] == [value], name
    assert conf["save"] == ["3600 1", "300 100", "60 10000"]
    assert "requirepass" not in conf
    assert "rename-command" not in conf


def test_every_setting_has_its_own_comment_saying_why():
    for conf in (
        container_conf(),
        render_redis_conf(Settings(), local_paths(Path("/b")), (7, 0), ["127.0.0.1"], "t"),
    ):
        lines = conf.splitlines()
        for index, line in enumerate(lines):
            if line and not line.startswith("#"):
                assert lines[index - 1].startswith("# "), f"no comment above: {line}"


def test_version_gated_directive_only_for_new_servers():
    settings = Settings()
    new = render_redis_conf(settings, CONTAINER_PATHS, (7, 4), CONTAINER_BIND, "t")
    old = render_redis_conf(settings, CONTAINER_PATHS, (7, 0), CONTAINER_BIND, "t")
    assert "hide-user-data-from-log yes" in new
    assert "hide-user-data-from-log" not in old
    # maxmemory-clients came with 7.0; before it, the per-client limit is what bounds a client.
    older = render_redis_conf(settings, CONTAINER_PATHS, (6, 2), CONTAINER_BIND, "t")
    assert "maxmemory-clients 67108864" in old and "maxmemory-clients" not in older
    assert "client-output-buffer-limit normal 64mb 0 0" in older


def test_client_memory_settings_are_checked():
    settings = Settings.model_validate(
        {"redis": {"maxmemory_clients": "32MB", "client_output_buffer_limit_normal": "0"}}
    )
    conf = directives(container_conf(settings))
    assert conf["maxmemory-clients"] == ["32mb"]
    assert conf["client-output-buffer-limit"] == ["normal 0 0 0"]
    # A bare number, as YAML and REDKEEP_* variables give it, is a size too.
    numbers = Settings.model_validate({"redis": {"maxmemory": 0, "maxmemory_clients": 0}})
    assert (numbers.redis.maxmemory, numbers.redis.maxmemory_clients) == ("0", "0")
    for bad in ({"maxmemory_clients": "150%"}, {"maxmemory_clients": "lots"},
                {"client_output_buffer_limit_normal": "64mb 16mb 60"}):  # fmt: skip
        with pytest.raises(ValueError, match="expected a size"):
            Settings.model_validate({"redis": bad})


@pytest.mark.parametrize(
    ("maxmemory", "clients", "budget"),
    [
        ("256mb", 64, 192),  # the default: a quarter
        ("4gb", 1024, 3072),  # a quarter
        ("100mb", 50, 50),  # at least 64 MiB, but at most half
        ("1g", 238.4185791015625, 715.2557373046875),  # 1g is 10^9 bytes, as Redis reads it
        ("0", 64, 0),  # no maxmemory: clients still bounded, no data budget
    ],
)
def test_auto_client_memory_and_the_data_budget(maxmemory, clients, budget):
    redis = Settings.model_validate({"redis": {"maxmemory": maxmemory}}).redis
    assert redis.maxmemory_clients == "auto"
    assert redis.clients_memory_bytes() / 2**20 == clients
    assert redis.data_budget_bytes() / 2**20 == budget
    conf = directives(container_conf(Settings.model_validate({"redis": {"maxmemory": maxmemory}})))
    assert conf["maxmemory-clients"] == [str(redis.clients_memory_bytes())]
    # An explicit setting is written as given (Redis resolves a percentage itself).
    explicit = Settings.model_validate({"redis": {"maxmemory_clients": "30%"}})
    assert directives(container_conf(explicit))["maxmemory-clients"] == ["30%"]


def test_image_version_guess():
    assert image_version("redis:7") == (7, 4)
    assert image_version("redis:7.2.5-alpine") == (7, 2)
    assert image_version("redis") == (8, 0)
    assert image_version("registry/redis:8.2") == (8, 2)


def test_local_paths_with_spaces_are_quoted(tmp_path):
    root = tmp_path / "my stack"
    conf = render_redis_conf(Settings(), local_paths(root), (7, 0), ["127.0.0.1"], "t")
    assert f'aclfile "{root.resolve()}/redis/users.acl"' in conf
    assert "bind 127.0.0.1" in conf


def test_acl_file_switches_default_off_and_stores_only_hashes():
    acl = render_acl(Settings(), PASSWORDS)
    lines = acl.splitlines()
    # Off and without a password (nobody logs in), every command (the AOF loader replays
    # transactions under these rules on Redis 7.0-8.4).
    assert lines[0] == "user default off resetpass ~* &* +@all"
    for password in PASSWORDS.values():
        assert password not in acl
    for role, password in PASSWORDS.items():
        (line,) = [line for line in lines if line.startswith(f"user {role} ")]
        assert f"#{password_hash(password)}" in line
        assert " on " in line
    app = next(line for line in lines if line.startswith("user app "))
    assert app.endswith("-@dangerous -@admin")
    exporter = next(line for line in lines if line.startswith("user exporter "))
    assert "+info" in exporter and "+get" not in exporter and "~" not in exporter


def test_password_hash_is_what_redis_stores():
    # From ACL LIST of a user created with >adminpw on Redis 7.0.15.
    expected = "5fcf82bc15aef42cd3ec93e6d4b51c04df110cf77ee715f62f3f172ff8ed9de9"
    assert password_hash("adminpw") == expected


def test_app_key_and_channel_patterns_come_from_config():
    settings = Settings.model_validate(
        {"users": {"app": {"keys": ["~session:*", "%R~config:*"], "channels": ["&events:*"]}}}
    )
    app = next(line for line in render_acl(settings, PASSWORDS).splitlines() if "user app" in line)
    assert "resetkeys ~session:* %R~config:* resetchannels &events:*" in app


def test_compose_publishes_only_the_tls_port_and_keeps_secrets_out():
    compose_text = render_compose(Settings(), 1000, 1000)
    compose = yaml.safe_load(compose_text)
    redis = compose["services"]["redis"]
    assert redis["image"] == "redis:7"
    assert redis["ports"] == ["127.0.0.1:6380:6380"]
    assert redis["user"] == "1000:1000"
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_EXPORTER_PASSWORD")
    test = redis["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    assert "--tls" in test[1] and "--user exporter" in test[1] and "grep -q PONG" in test[1]
    assert "-a " not in test[1] and "--pass" not in test[1]
    assert "6379" not in compose_text


def test_bundle_files_modes_and_order():
    files = bundle_files(
        Settings(), PASSWORDS, 1000, 1000, secrets={"GRAFANA_ADMIN_PASSWORD": "g" * 64}
    )
    assert files[-1].path == "redkeep.yaml"
    modes = {item.path: item.mode for item in files}
    assert modes[".env"] == 0o600 and modes["redis/users.acl"] == 0o600
    env = next(item.content for item in files if item.path == ".env")
    assert f"REDIS_APP_PASSWORD={PASSWORDS['app']}" in env
    assert f"REDIS_URL=rediss://app:{PASSWORDS['app']}@localhost:6380" in env
    example = next(item.content for item in files if item.path == ".env.example")
    assert example.startswith("# WARNING")
    for password in PASSWORDS.values():
        assert password not in example
    env_keys = {line.split("=")[0] for line in env.splitlines() if "=" in line and line[0] != "#"}
    example_keys = {
        line.split("=")[0] for line in example.splitlines() if "=" in line and line[0] != "#"
    }
    assert env_keys == example_keys
    for item in files:
        if item.path not in (".env",):
            data = item.content.encode() if isinstance(item.content, str) else item.content
            for password in PASSWORDS.values():
                assert password.encode() not in data, item.path
    assert all(not item.path.startswith("/") for item in files)


def test_app_rules_are_always_closed_by_dangerous_and_admin():
    settings = Settings.model_validate({"users": {"app": {"commands": ["+@all"]}}})
    app = next(line for line in render_acl(settings, PASSWORDS).splitlines() if "user app" in line)
    assert app.endswith("+@all -@dangerous -@admin")
