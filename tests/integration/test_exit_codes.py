"""One exit-code table for every command (README "Exit codes"), checked on real refusals.

3 means "cannot connect or log in" (connection refused, WRONGPASS) for every command but
`health`, which is a container health probe: 0 when Redis answers PING, else 1.
A refused command (NOPERM) is 1: the login worked, the answer is no.
"""

import re
from pathlib import Path

import pytest

from redkeep.errors import ExitStatus
from tests.conftest import run_redkeep
from tests.servers import free_port

README = Path(__file__).parents[2] / "README.md"

# Each command that talks to Redis, as run against --url URL.
COMMANDS = {
    "health": lambda url, root, tmp: ("health", "--url", url, "--dir", root),
    "status": lambda url, root, tmp: ("status", root, "--url", url),
    "users list": lambda url, root, tmp: ("users", "list", "--url", url, "--dir", root),
    "certs rotate": lambda url, root, tmp: ("certs", "rotate", "--url", url, "--dir", root),
    "audit": lambda url, root, tmp: ("audit", url, "--dir", root),
    "backup run": lambda url, root, tmp: (
        "backup",
        "run",
        "--url",
        url,
        "--dir",
        root,
        "--dest",
        tmp,
    ),
}
CANNOT_CONNECT = {name: 1 if name == "health" else 3 for name in COMMANDS}


def url_of(bundle, user: str, password: str, port: int | None = None) -> str:
    return f"rediss://{user}:{password}@localhost:{port or bundle.settings.redis.tls_port}"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_refused_connection(running_bundle, tmp_path, command):
    url = url_of(running_bundle, "app", running_bundle.password("app"), port=free_port())
    result = run_redkeep(*COMMANDS[command](url, running_bundle.root, tmp_path))
    assert result.returncode == CANNOT_CONNECT[command], result.stdout + result.stderr
    assert "connection refused" in result.stdout + result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_a_refused_login(running_bundle, tmp_path, command):
    url = url_of(running_bundle, "app", "not-the-password")
    result = run_redkeep(*COMMANDS[command](url, running_bundle.root, tmp_path))
    assert result.returncode == CANNOT_CONNECT[command], result.stdout + result.stderr
    assert "WRONGPASS" in result.stdout + result.stderr


@pytest.mark.parametrize("command", ["users list", "certs rotate", "backup run"])
def test_a_refused_command_is_a_failure_not_a_connection_problem(running_bundle, tmp_path, command):
    url = url_of(running_bundle, "app", running_bundle.password("app"))  # may not run these
    result = run_redkeep(*COMMANDS[command](url, running_bundle.root, tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOPERM" in result.stderr


def test_the_readme_documents_the_same_table():
    section = README.read_text().split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| ([^|]+) \|", section, re.MULTILINE))
    assert set(rows) == {str(int(status)) for status in ExitStatus}
    assert "cannot connect or log in" in rows["3"] and "WRONGPASS" in section
    prose = " ".join(section.split())
    assert "`redkeep health`" in prose and "0 when Redis answers PING, else 1" in prose
