import dataclasses
import subprocess
import sys

import pytest
import yaml

from redkeep.config.defaults import StandaloneBackup, StandaloneExporter
from redkeep.config.load import load_settings
from redkeep.config.sample import render_sample
from redkeep.config.schema import BackupSettings, ExporterSettings, Settings
from redkeep.errors import ConfigError
from redkeep.proxy.config import SENTINEL_PASSWORD_ENV


def write(tmp_path, text):
    path = tmp_path / "redkeep.yaml"
    path.write_text(text)
    return path


def problems_of(path, environ=None):
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ or {})
    return caught.value.problems


def test_defaults_are_hardened():
    settings = Settings()
    assert settings.redis.tls_port == 6380
    assert settings.redis.maxmemory_policy == "allkeys-lru"
    assert settings.tls.auth_clients == "yes"
    assert settings.tls.protocols == ["TLSv1.2", "TLSv1.3"]
    assert settings.tls.key_type == "ecdsa-p256"
    assert {"localhost", "127.0.0.1", "::1"} <= set(settings.tls.server_names)
    assert "+@all" not in settings.users.app.commands


def test_every_error_is_reported_with_its_path(tmp_path):
    path = write(
        tmp_path,
        "redis:\n  tls_port: 70000\n  maxmemory: lots\ntls:\n  auth_clients: maybe\n"
        "  prot: 1\nusers:\n  app:\n    keys: ['app:*']\n",
    )
    problems = problems_of(path)
    assert len(problems) == 5
    text = "\n".join(problems)
    assert "At 'redis.tls_port': Input should be less than or equal to 65535" in text
    assert "At 'redis.maxmemory': expected a size such as 256mb" in text
    assert "At 'tls.auth_clients': Input should be 'yes', 'optional' or 'no'" in text
    assert "At 'tls.prot': Extra inputs are not permitted" in text
    assert "At 'users.app.keys': 'app:*' is not a key pattern" in text


def test_cross_field_rule_host_must_be_in_certificate(tmp_path):
    path = write(tmp_path, "host: redis.example.com\n")
    (problem,) = problems_of(path)
    assert "host 'redis.example.com' is not in tls.server_names" in problem


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = write(tmp_path, "redis:\n  tls_port: [1,\n")
    with pytest.raises(ConfigError, match=r"redkeep.yaml:3:1: YAML syntax error"):
        load_settings(path, {})


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"), {})


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="no such file; create one with `redkeep init`"):
        load_settings(tmp_path / "absent.yaml", {})


def test_environment_overrides_nested_settings(tmp_path):
    path = write(tmp_path, "redis:\n  tls_port: 7000\n")
    env = {
        "REDKEEP_REDIS__TLS_PORT": "7100",
        "REDKEEP_TLS__SERVER_NAMES": "[localhost, db.internal]",
        "UNRELATED": "x",
    }
    settings = load_settings(path, env)
    assert settings.redis.tls_port == 7100
    assert settings.tls.server_names == ["localhost", "db.internal"]


def test_environment_override_errors_name_the_variable(tmp_path):
    path = write(tmp_path, "")
    (problem,) = problems_of(path, {"REDKEEP_REDIS__TLS_PORT": "zero"})
    assert problem.startswith("At 'redis.tls_port'")
    assert problem.endswith("(from REDKEEP_REDIS__TLS_PORT)")


def test_unknown_environment_override_is_an_error_not_ignored(tmp_path):
    (problem,) = problems_of(write(tmp_path, ""), {"REDKEEP_REDIS__TLS_PROT": "1"})
    assert "At 'redis.tls_prot': Extra inputs are not permitted" in problem


def test_documented_variables_that_are_no_settings_leave_the_settings_alone(tmp_path):
    # docs/proxy.md: the proxy's Sentinel password may come from REDKEEP_SENTINEL_PASSWORD.
    path = write(tmp_path, "proxy:\n  sentinel_user: app\n")
    settings = load_settings(
        path, {SENTINEL_PASSWORD_ENV: "s3cret", "REDKEEP_PROXY__MAX_CONNS": "7"}
    )
    assert (settings.proxy.sentinel_user, settings.proxy.max_conns) == ("app", 7)
    # A misspelled setting beside it is still refused, naming the variable.
    (problem,) = problems_of(path, {SENTINEL_PASSWORD_ENV: "s3cret", "REDKEEP_PROXY__LISTN": "x"})
    assert problem == (
        "At 'proxy.listn': Extra inputs are not permitted (from REDKEEP_PROXY__LISTN)"
    )


def test_sample_documents_every_setting_and_loads_back_to_the_defaults(tmp_path):
    sample = render_sample()
    assert "# The TLS port, the only listener." in sample
    data = yaml.safe_load(sample)
    assert Settings.model_validate(data) == Settings()
    for name in Settings.model_fields:
        assert f"\n{name}:" in sample


def test_sample_of_custom_settings_round_trips():
    settings = Settings.model_validate(
        {"redis": {"tls_port": 7001, "bind": ["127.0.0.1", "-::1"]}, "tls": {"auth_clients": "no"}}
    )
    assert Settings.model_validate(yaml.safe_load(render_sample(settings))) == settings


def test_bare_yaml_yes_no_mean_the_tls_modes(tmp_path):
    assert load_settings(write(tmp_path, "tls:\n  auth_clients: no\n"), {}).tls.auth_clients == "no"
    assert (
        load_settings(write(tmp_path, "tls:\n  auth_clients: yes\n"), {}).tls.auth_clients == "yes"
    )


def test_standalone_backup_defaults_match_the_schema():
    standalone, schema = StandaloneBackup(), BackupSettings()
    for name in (
        "type",
        "compress",
        "age_recipients",
        "identity_file",
        "passphrase_file",
        "idle_timeout",
    ):
        assert getattr(standalone, name) == getattr(schema, name), name
    assert standalone.notify.on_success == schema.notify.on_success
    assert standalone.notify.telegram_api_url == schema.notify.telegram_api_url
    assert standalone.s3.__dict__ == schema.s3.model_dump()
    assert standalone.metrics_file is None  # outside a bundle: only with --metrics-file


def test_sample_of_settings_with_checks_and_profiles_round_trips():
    settings = Settings.model_validate(
        {
            "exporter": {
                "checks": [
                    {"name": "age", "type": "key_age", "key": "m:s", "field": "t"},
                    {"name": "n", "type": "key_count", "pattern": "rl:*", "db": 2},
                ],
                "targets": [{"url": "redis://10.0.0.2:6379", "profile": "p"}],
                "profiles": {"p": {"username": "exporter", "password_env": "P_PW"}},
            }
        }
    )
    assert Settings.model_validate(yaml.safe_load(render_sample(settings))) == settings


def test_a_check_without_what_its_type_needs_is_an_error(tmp_path):
    path = write(
        tmp_path, "exporter:\n  checks:\n    - name: x\n      type: hash_counters\n      key: k\n"
    )
    (problem,) = problems_of(path)
    assert problem == "At 'exporter.checks[0]': a hash_counters check needs fields"


def test_the_sections_a_command_runs_without_a_bundle_are_declared_once():
    """The schema's backup and exporter models are built from the plain dataclasses: the same
    settings in the same order, with the dataclass' descriptions and bounds."""
    for plain, model in (
        (StandaloneBackup, BackupSettings),
        (StandaloneExporter, ExporterSettings),
    ):
        assert [item.name for item in dataclasses.fields(plain)] == list(model.model_fields)
    field = ExporterSettings.model_fields["http_max_connections"]
    declared = next(
        item
        for item in dataclasses.fields(StandaloneExporter)
        if item.name == "http_max_connections"
    )
    assert field.description == declared.metadata["description"]
    with pytest.raises(ValueError, match="less than or equal to 10000"):
        ExporterSettings(http_max_connections=10001)
    assert isinstance(StandaloneBackup().retention.keep_last, int)  # the whole section


def test_the_commands_that_run_without_a_bundle_load_no_pydantic():
    modules = ["redkeep.config.defaults", "redkeep.cli.backup", "redkeep.cli.exporter"]
    heavy = ["pydantic", "yaml", "cryptography"]
    code = (
        f"import sys\nfor name in {modules!r}: __import__(name)\n"
        f"print(sorted(set({heavy!r}) & {{name.split('.')[0] for name in sys.modules}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_replica_gap_of_backups_is_a_setting_of_at_least_zero(tmp_path):
    assert Settings().backup.max_replica_gap_bytes == 1 << 20
    assert StandaloneBackup().max_replica_gap_bytes == 1 << 20  # runs without a bundle too
    (problem,) = problems_of(write(tmp_path, "backup:\n  max_replica_gap_bytes: -1\n"))
    assert (
        "At 'backup.max_replica_gap_bytes': Input should be greater than or equal to 0" in problem
    )
    settings = load_settings(write(tmp_path, "backup:\n  max_replica_gap_bytes: 0\n"), {})
    assert settings.backup.max_replica_gap_bytes == 0
