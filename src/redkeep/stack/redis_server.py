"""The redis-server binary: find it, read its version, check a config, start it, read its log.

`up` and init's configuration check start it here; restore drills start their own throw-away
server (`backup/drill.py`). Which running redis-server is a bundle's, and signalling it:
`stack/processes.py`; stopping a child: `stack/children.py`.
"""

import re
import shutil
import subprocess
from pathlib import Path

from redkeep.errors import ConfigError, UsageError
from redkeep.stack import children

INSTALL_HINT = "install it: `apt-get install redis-server` (or `make setup`)"
# redis-server exits with status 1 both for a bad file and for "nowhere to listen".
CONFIG_OK_MARK = "Configured to not listen anywhere"


def find_redis_server() -> str:
    """Return the path of redis-server; raise UsageError with an install hint if missing."""
    path = shutil.which("redis-server")
    if path is None:
        raise UsageError(f"redis-server not found on PATH; {INSTALL_HINT}")
    return path


def server_version(binary: str) -> tuple[int, int, int]:
    """The version of a redis-server binary, from `redis-server --version`."""
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False, timeout=10
    ).stdout
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", output)
    if not match:
        raise UsageError(f"cannot read the version of {binary}: {output.strip()[:80]}")
    return (int(match[1]), int(match[2]), int(match[3]))


def check_config(binary: str, conf_path: Path, sentinel: bool = False) -> None:
    """Let redis-server parse `conf_path` (and load its TLS files) without listening anywhere;
    as a Sentinel's sentinel.conf with `sentinel`.

    Raise ConfigError with redis-server's own explanation if it refuses the file.
    """
    mode = ["--sentinel"] if sentinel else []
    result = subprocess.run(
        [binary, str(conf_path), *mode, "--port", "0", "--tls-port", "0", "--logfile", ""],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    output = result.stdout + result.stderr
    if CONFIG_OK_MARK in output:
        return
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    interesting = [line for line in lines if ">>>" in line or "Bad directive" in line]
    detail = "; ".join(interesting or lines[-3:]) or f"exit status {result.returncode}"
    raise ConfigError(f"{conf_path}: redis-server rejects this configuration: {detail}")


def start(
    binary: str, conf_path: Path, die_with_parent: bool = False, sentinel: bool = False
) -> subprocess.Popen:
    """Start redis-server on `conf_path` (as a Sentinel with `sentinel`). Files it creates are
    private to this user (umask 077).

    It runs in its own session: Ctrl-C reaches only redkeep, which then stops it in order,
    and a detached server outlives redkeep. With `die_with_parent` (a throw-away server, such
    as init's check) it is killed when this process dies, however it dies.
    """
    return subprocess.Popen(
        [binary, str(conf_path), *(["--sentinel"] if sentinel else [])],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        umask=0o077,
        start_new_session=True,
        preexec_fn=children.die_with_parent() if die_with_parent else None,  # noqa: PLW1509
    )


def startup_failure(log_path: Path) -> str:
    """Why redis-server stopped: the warnings at the end of its log, without timestamps."""
    messages = [line.split(" # ", 1)[1] for line in log_tail(log_path, 4) if " # " in line]
    reason = "; ".join(messages[-2:]) or "no reason in the log"
    if "Address already in use" in reason:
        reason += "; choose another port with `redkeep init DIR --force --tls-port N`"
    return reason


def log_tail(log_path: Path, lines: int = 5) -> list[str]:
    """The last lines of a redis log, for error messages."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


# What redis-server logs when it starts and ends loading a dataset (at start, or a replica's
# full sync): between them it answers clients only now and then, so a connection may time out.
LOADING_STARTS = ("Loading RDB produced by", "Reading RDB base file", "Loading DB in memory")
LOADING_ENDS = (
    "DB loaded from",
    "Done loading RDB",
    "Finished with success",
    "Failed trying to load",
    "Ready to accept connections",
    "Server initialized",
)


def loading_by_log(log_path: Path) -> bool:
    """Whether the server's log says it is loading a dataset now (its last word on loading
    is a start); False when the log cannot be read."""
    try:
        with log_path.open("rb") as handle:
            handle.seek(max(0, log_path.stat().st_size - 65536))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return False
    for line in reversed(lines):
        if any(mark in line for mark in LOADING_ENDS):
            return False
        if any(mark in line for mark in LOADING_STARTS):
            return True
    return False
