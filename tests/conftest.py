"""Fixtures: real redis-server processes (plain, ACL, TLS, mutual TLS), a PKI, bundles, the CLI.

Every server listens on 127.0.0.1 on a free port in a temp dir and is stopped at teardown.
"""

import contextlib
import datetime as dt
import io
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from redkeep.cli import run
from redkeep.pki.files import TLSFiles, init_tls
from tests.servers import (
    BUILDS,
    TLS_BUILDS,
    RedisServer,
    ServerBuild,
    ServerPool,
    free_port,
    require_binary,
    tls_lines,
)

REDKEEP = str(Path(sys.executable).with_name("redkeep"))


REPOSITORY = Path(__file__).resolve().parent.parent
# What Python and the tools themselves keep in a checkout (the venv, bytecode, git).
NOT_OURS = {".git", ".venv", "__pycache__", ".ruff_cache", ".pytest_cache"}

# Hypothesis keeps examples and caches in ./.hypothesis by default: not in the checkout.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "redkeep-hypothesis")
settings.register_profile("redkeep", database=None)
settings.load_profile("redkeep")


def checkout_files() -> set[str]:
    found = set()
    for root, directories, files in os.walk(REPOSITORY):
        directories[:] = [
            d for d in directories if d not in NOT_OURS and not d.endswith(".egg-info")
        ]
        found.update(os.path.relpath(os.path.join(root, name), REPOSITORY) for name in files)
        found.update(os.path.relpath(os.path.join(root, d), REPOSITORY) + "/" for d in directories)
    return found


@pytest.fixture(scope="session", autouse=True)
def checkout_stays_clean() -> Iterator[None]:
    """Tests write into temp dirs only: a file that appears in the checkout fails the run."""
    before = checkout_files()
    yield
    appeared = sorted(checkout_files() - before)
    assert not appeared, f"the tests wrote into the checkout: {appeared[:20]}"


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running(tmp_path_factory) -> Iterator[None]:
    """After the run, no process may still live in (or name) a test's temp dir: a leaked
    exporter or redis-server is a bug in redkeep or a test. Leftovers are killed, then reported."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    left = list(_processes_under(base))
    for pid, _ in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running after the tests: {left}"


def _processes_under(base: str) -> Iterator[tuple[int, str]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and (base in cmdline or cwd.startswith(base)):
            yield int(entry.name), cmdline.strip()


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch) -> "callable":
    """Run `redkeep ARGS` in-process; return exit code, stdout and stderr."""

    def invoke(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
        with monkeypatch.context() as patch:
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            if cwd is not None:
                patch.chdir(cwd)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = run([str(arg) for arg in args])
        return Result(code, out.getvalue(), err.getvalue())

    return invoke


def run_redkeep(*args: str, cwd: Path | None = None, env: dict | None = None, timeout=60):
    """Run the installed `redkeep` console script in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    if args and args[0] == "init":
        # Bundles in tests run side by side: each exporter and proxy gets its own ports
        # (written into redkeep.yaml).
        for key in ("EXPORTER__LISTEN", "PROXY__LISTEN", "PROXY__METRICS_LISTEN"):
            full_env.setdefault(f"REDKEEP_{key}", f"127.0.0.1:{free_port()}")
    return subprocess.run(
        [REDKEEP, *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """Tests must not see the developer's REDIS_URL, REDIS_PASSWORD or REDKEEP_* settings."""
    for name in list(os.environ):
        if name in ("REDIS_URL", "REDIS_PASSWORD") or name.startswith("REDKEEP_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    require_binary("redis-cli")
    return require_binary("redis-server")


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> TLSFiles:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    files = TLSFiles(tmp_path_factory.mktemp("pki") / "tls")
    init_tls(
        files, "test", ["localhost", "127.0.0.1"], "ecdsa-p256", 30, 30, dt.datetime.now(dt.UTC)
    )
    return files


@pytest.fixture
def redis_factory(redis_binary, tmp_path) -> Iterator["callable"]:
    """Start redis-servers with extra config lines; all are stopped at teardown."""
    servers: list[RedisServer] = []

    def start(config: list[str] | None = None, tls: bool = False) -> RedisServer:
        workdir = tmp_path / f"redis{len(servers)}"
        port = 0 if tls else free_port()
        server = RedisServer(
            redis_binary,
            workdir,
            list(config or []),
            port=port,
            tls_port=free_port() if tls else 0,
        )
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


ACL_USERS = [
    "user default off",
    "user admin on >admin-secret ~* &* +@all",
    "user reader on >reader-secret ~* -@all +get +ping",
]


@pytest.fixture
def plain_redis(redis_factory) -> RedisServer:
    return redis_factory()


@pytest.fixture
def acl_redis(redis_factory) -> RedisServer:
    return redis_factory(ACL_USERS)


@pytest.fixture
def tls_redis(redis_factory, pki) -> RedisServer:
    """TLS only, client certificates not required, ACL users."""
    return redis_factory([*ACL_USERS, *tls_lines(pki.directory, "no")], tls=True)


@pytest.fixture
def mtls_redis(redis_factory, pki) -> RedisServer:
    """TLS only, client certificates required, ACL users."""
    return redis_factory([*ACL_USERS, *tls_lines(pki.directory, "yes")], tls=True)


# The version matrix: a test that takes `server_build` runs once on each server build (ids
# like `redis-6.2.14`, `valkey-8.1.8`), one that takes `tls_server_build` on each TLS-capable
# one; `server_factory(build, config, tls=...)` starts servers of a build.


def _matrix_build(request) -> ServerBuild:
    build = request.param
    # Read back by the terminal summary: which builds ran which tests.
    request.node.user_properties.append(("server_build", build.name))
    build.require()
    return build


@pytest.fixture(params=BUILDS, ids=lambda build: build.name)
def server_build(request) -> ServerBuild:
    return _matrix_build(request)


@pytest.fixture(params=TLS_BUILDS, ids=lambda build: build.name)
def tls_server_build(request) -> ServerBuild:
    return _matrix_build(request)


@pytest.fixture
def server_factory(tmp_path) -> Iterator["callable"]:
    """Start servers of any build with extra config lines; all are stopped at teardown."""
    pools: dict[str, ServerPool] = {}

    def start(build: ServerBuild, config: list[str] | None = None, tls: bool = False):
        if build.name not in pools:
            pools[build.name] = ServerPool(build.require(), tmp_path / build.name)
        return pools[build.name].start(config, tls)

    yield start
    for pool in pools.values():
        pool.stop_all()


def pytest_terminal_summary(terminalreporter) -> None:
    """One line per server build that tests ran on, so the output names the versions."""
    outcomes: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            name = dict(getattr(report, "user_properties", ())).get("server_build")
            if name and (report.when == "call" or outcome in ("error", "skipped")):
                counts = outcomes.setdefault(name, {})
                counts[outcome] = counts.get(outcome, 0) + 1
    if not outcomes:
        return
    terminalreporter.section("server builds")
    for build in BUILDS:
        if build.name in outcomes:
            counts = ", ".join(f"{n} {outcome}" for outcome, n in outcomes[build.name].items())
            tls = "TLS" if build.tls else "no TLS"
            terminalreporter.write_line(
                f"{build.name:<14} {tls:<6} RDB {build.rdb_version:<3} {counts:<22} "
                f"{build.path} ({build.source})"
            )
    _write_names_per_build(terminalreporter)


def _write_names_per_build(terminalreporter) -> None:
    """Names a test reported per build with `record_property("server_names", (title, names))`
    (the exporter's metric families): how many on each build, and how they differ from the
    default build's (Debian's, which the whole suite runs on)."""
    found: dict[str, dict[str, set[str]]] = {}
    for report in terminalreporter.stats.get("passed", []):
        properties = getattr(report, "user_properties", ())
        build = dict(properties).get("server_build")
        for key, value in properties:
            if key == "server_names" and build:
                title, names = value
                found.setdefault(title, {}).setdefault(build, set()).update(names)
    default = next(build.name for build in BUILDS if build.path == Path("/usr/bin/redis-server"))
    for title, per_build in found.items():
        base = per_build.get(default, set())
        terminalreporter.write_line(f"{title}, compared with {default}'s:")
        for build in BUILDS:
            if build.name in per_build:
                names = per_build[build.name]
                more, fewer = sorted(names - base), sorted(base - names)
                terminalreporter.write_line(
                    f"  {build.name:<14} {len(names):>4}"
                    + (f"; also {', '.join(more)}" if more else "")
                    + (f"; not {', '.join(fewer)}" if fewer else "")
                )
