"""Which process is a bundle's: real processes with chosen command lines and directories;
probes of a port whose process does not answer."""

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from redkeep.stack.children import end_child
from redkeep.stack.probe import http_get, redis_ping
from redkeep.stack.processes import (
    BACKUP,
    EXPORTER,
    PROXY,
    REDIS,
    is_ours,
    is_stopped,
    listening_ports,
    locate,
    option_value,
    parent_command,
    send_signal,
    stop,
)

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def spawn():
    """Start a sleeping process whose command line ends with ARGS, in `cwd`."""
    started: list[subprocess.Popen] = []

    def start(*args: str, cwd: Path | None = None) -> int:
        started.append(subprocess.Popen([*SLEEP, *args], cwd=cwd))
        cmdline = Path(f"/proc/{started[-1].pid}/cmdline")
        while not cmdline.read_bytes().endswith(b"\0"):  # right after exec it can be empty
            assert started[-1].poll() is None
        return started[-1].pid

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_helper_is_known_by_its_subcommand_and_its_bundle(tmp_path, spawn):
    root = tmp_path / "bundle"
    root.mkdir()
    proxy = spawn("redkeep", "proxy", "--dir", str(root))
    assert is_ours(proxy, PROXY, root)
    assert not is_ours(proxy, EXPORTER, root)
    assert not is_ours(proxy, PROXY, tmp_path)  # another bundle
    relative = spawn("redkeep", "--debug", "exporter", "--dir=bundle", cwd=tmp_path)
    assert is_ours(relative, EXPORTER, root)
    # A one-off command that merely mentions a service's name is none of them.
    assert not is_ours(spawn("redkeep", "certs", "issue", "proxy", "--dir", str(root)), PROXY, root)
    one_off = spawn("redkeep", "backup", "run", "--dir", str(root))
    scheduled = spawn("redkeep", "backup", "run", "--dir", str(root), "--every", "5")
    assert (is_ours(one_off, BACKUP, root), is_ours(scheduled, BACKUP, root)) == (False, True)
    assert not is_ours(spawn("proxy", "--dir", str(root)), PROXY, root)  # not redkeep


def test_redis_server_is_known_by_its_data_directory(tmp_path, redis_factory):
    other = redis_factory()  # a redis-server working in some other directory
    assert not is_ours(other.pid, REDIS, tmp_path)
    assert is_ours(other.pid, REDIS, other.workdir.parent / "x") is False
    (tmp_path / "b").mkdir()
    os.symlink(other.workdir, tmp_path / "b" / "data")
    assert is_ours(other.pid, REDIS, tmp_path / "b")  # `dir` is the bundle's data/


def test_an_exited_process_is_nobodys(tmp_path):
    root = tmp_path
    process = subprocess.Popen([*SLEEP[:2], "pass", "redkeep", "proxy", "--dir", str(root)])
    stat = Path(f"/proc/{process.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not yet reaped
        pass
    assert not is_ours(process.pid, PROXY, root)
    process.wait()
    assert not is_ours(process.pid, PROXY, root)


def test_a_pid_file_naming_another_process_is_stale_and_that_process_is_not_signalled(
    tmp_path, spawn
):
    root = tmp_path
    bystander = spawn()
    real = spawn("redkeep", "proxy", "--dir", str(root))
    (tmp_path / "proxy.pid").write_text(f"{bystander}\n")
    located = locate(PROXY, root, tmp_path)
    assert located.pid == real  # found in /proc
    assert "which is not this bundle's proxy" in located.stale
    assert not send_signal(bystander, PROXY, root, signal.SIGTERM)
    assert Path(f"/proc/{bystander}/cmdline").read_bytes()  # still alive
    (tmp_path / "proxy.pid").write_text("garbage\n")
    assert locate(PROXY, root, tmp_path).stale == "holds no pid"


def test_listening_ports_are_the_process_own_sockets():
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket() as idle:
        idle.bind(("127.0.0.1", 0))  # bound, not listening
        ports = listening_ports(os.getpid())
        assert server.getsockname()[1] in ports
        assert idle.getsockname()[1] not in ports
    assert listening_ports(2**22 + 1) == set()  # no such process


def test_a_stopped_helper_is_seen_as_stopped_and_still_stops(tmp_path, spawn):
    proxy = spawn("redkeep", "proxy", "--dir", str(tmp_path))
    assert not is_stopped(proxy)
    os.kill(proxy, signal.SIGSTOP)
    while not is_stopped(proxy):  # the signal is delivered asynchronously
        pass
    # SIGTERM alone waits for a SIGCONT that never comes: `down` would time out.
    assert stop(proxy, PROXY, tmp_path, timeout=10)
    assert not Path(f"/proc/{proxy}/cmdline").exists() or not is_ours(proxy, PROXY, tmp_path)


def test_the_schedule_interval_is_read_from_the_command_line(tmp_path, spawn):
    spaced = spawn("redkeep", "backup", "run", "--dir", str(tmp_path), "--every", "5")
    joined = spawn("redkeep", "backup", "run", "--dir", str(tmp_path), "--every=7")
    assert (option_value(spaced, "--every"), option_value(joined, "--every")) == ("5", "7")
    assert option_value(spaced, "--dest") is None


def test_a_port_that_accepts_but_never_answers_is_not_answering():
    """What a stopped process looks like: the kernel completes the connect from the backlog."""
    with socket.create_server(("127.0.0.1", 0)) as frozen:  # listens, never accepts
        port = frozen.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # a TCP connect alone succeeds
        http = http_get("127.0.0.1", port, "/health", tls=False, timeout=0.5)
        ping = redis_ping("127.0.0.1", port, None, timeout=0.5)
    assert (http.answering, http.detail) == (False, "no answer to GET /health within 0.5s")
    assert (ping.answering, ping.detail) == (False, "no answer to PING within 0.5s")


def test_any_http_answer_counts_even_a_refusal():
    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_error(401)

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        answer = http_get("127.0.0.1", server.server_address[1], "/health", tls=False)
        server.shutdown()
    assert (answer.answering, answer.detail) == (True, "HTTP 401 to GET /health")


def test_a_child_that_ignores_sigterm_is_killed_after_the_wait():
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on
    end_child(stubborn, timeout=0.2)
    assert stubborn.returncode == -signal.SIGKILL
    polite = subprocess.Popen(SLEEP)
    end_child(polite, timeout=30)
    assert polite.returncode == -signal.SIGTERM
    end_child(polite, timeout=30)  # one that has exited is left alone
    assert polite.returncode == -signal.SIGTERM


def test_a_process_started_by_a_foreground_up_names_up_as_its_parent():
    """A Sentinel a foreground `redkeep up` watches is not for `certs rotate` to restart."""
    for words, expected in (((), None), (("redkeep", "--debug", "up", "DIR"), ("up",))):
        # bash's own command line carries `words` (its $0, $1, ...): it is the parent.
        parent = subprocess.Popen(
            ["bash", "-c", "sleep 30 & echo $!; wait", *words], stdout=subprocess.PIPE, text=True
        )
        try:
            child = int(parent.stdout.readline())
            assert parent_command(child) == expected
        finally:
            os.kill(child, signal.SIGTERM)
            end_child(parent, timeout=5)
            parent.stdout.close()
