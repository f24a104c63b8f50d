import click
import pytest
import yaml

from redkeep import __version__
from redkeep.cli import cli as root

CONTEXT = click.Context(root)


def subcommands(group: click.Group) -> dict[str, click.Command]:
    return {name: group.get_command(CONTEXT, name) for name in group.list_commands(CONTEXT)}


def all_command_paths(group: click.Group, prefix=()):
    for name, command in subcommands(group).items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_command_paths(command, (*prefix, name))


def test_version(cli):
    result = cli("--version")
    assert result.code == 0
    assert __version__ in result.out


@pytest.mark.parametrize("path", list(all_command_paths(root)), ids=" ".join)
def test_every_command_has_help(cli, path):
    result = cli(*path, "--help")
    assert result.code == 0, result.err
    assert "Usage: redkeep " + " ".join(path) in result.out


def test_contract_commands_exist():
    commands = subcommands(root)
    contract = "init up down status health certs users backup exporter proxy render audit config"
    assert set(contract.split()) <= set(commands)
    assert {"init", "issue", "show", "verify", "rotate"} <= set(subcommands(commands["certs"]))
    assert {"list", "rotate", "finish-rotation"} <= set(subcommands(commands["users"]))
    assert {"validate", "sample", "show"} <= set(subcommands(commands["config"]))
    assert {"run", "list", "verify", "restore", "prune"} <= set(subcommands(commands["backup"]))


def test_unknown_option_is_a_usage_error(cli):
    result = cli("health", "--no-such-option")
    assert result.code == 2
    assert "No such option" in result.err


def test_config_sample_is_valid_yaml(cli):
    result = cli("config", "sample")
    assert result.code == 0
    assert yaml.safe_load(result.out)["redis"]["tls_port"] == 6380


def test_config_validate_reports_every_problem_and_exits_2(cli, tmp_path):
    path = tmp_path / "redkeep.yaml"
    path.write_text("redis:\n  tls_port: 0\ntls:\n  port: 1\n")
    result = cli("config", "validate", path)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert lines[0] == f"redkeep: error: {path}: 2 invalid setting(s)"
    assert "  At 'redis.tls_port': Input should be greater than or equal to 1" in lines
    assert "  At 'tls.port': Extra inputs are not permitted" in lines


def test_config_validate_accepts_the_sample(cli, tmp_path):
    path = tmp_path / "redkeep.yaml"
    path.write_text(cli("config", "sample").out)
    result = cli("config", "validate", path)
    assert (result.code, result.out.strip()) == (0, f"{path}: valid")


def test_errors_are_one_line_without_traceback(cli, tmp_path):
    result = cli("status", tmp_path)
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "Traceback" not in result.err
    assert "no redkeep.yaml there" in result.err


def test_debug_shows_the_traceback(cli, tmp_path):
    result = cli("--debug", "status", tmp_path)
    assert result.code == 2
    assert "Traceback" in result.err


def test_bad_url_is_a_usage_error(cli):
    result = cli("health", "--url", "http://nope")
    assert result.code == 2
    assert "scheme must be redis://, rediss:// or unix://" in result.err


def test_render_nginx_refuses_to_follow_sentinel(cli, tmp_path):
    result = cli(
        "render", "nginx", "--sentinel", "127.0.0.1:26379", "--master-name", "main", cwd=tmp_path
    )
    assert result.code == 2
    assert "nginx cannot follow a Sentinel failover" in result.err
    assert result.out == ""
