"""A consistent copy of Redis 7's multi-part AOF, following the official procedure.

Pause automatic rewrites (`CONFIG SET auto-aof-rewrite-percentage 0`), wait until no rewrite
runs, read the manifest, hard-link the manifest and the files it lists, then put the setting
back - always, also on failure or Ctrl-C. Redis only appends to these files or replaces them
whole, so the links (cut at the sizes seen while paused) are a consistent point in time.
Needs the data directory on this machine and a user allowed CONFIG SET.
"""

import contextlib
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from redkeep.backup.aoflock import REWRITE_SETTING, AofLock
from redkeep.errors import RedkeepError
from redkeep.redis.client import explain_failure
from redkeep.redis.target import Target

WORKDIR_PREFIX = ".redkeep-aof-"  # beside the AOF directory, to hard-link its files
WAIT_TIMEOUT = 300.0


@dataclass(frozen=True)
class AofFile:
    name: str
    seq: int
    kind: str  # b(ase), i(ncr), h(istory)


def parse_manifest(text: str, where: str) -> list[AofFile]:
    """The files of an AOF manifest (`file NAME seq N type b|i|h` lines; `#` comments)."""
    files = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        tokens = line.split()
        fields = dict(zip(tokens[::2], tokens[1::2], strict=False))
        if len(tokens) < 6 or len(tokens) % 2 or not {"file", "seq", "type"} <= set(fields):
            raise RedkeepError(f"{where}:{number}: not an AOF manifest line: {line[:80]!r}")
        name = fields["file"].strip('"')
        if "/" in name or fields["type"] not in ("b", "i", "h") or not fields["seq"].isdigit():
            raise RedkeepError(f"{where}:{number}: bad AOF manifest entry: {line[:80]!r}")
        files.append(AofFile(name, int(fields["seq"]), fields["type"]))
    if not any(item.kind in "bi" for item in files):
        raise RedkeepError(f"{where}: the AOF manifest lists no base or incr file")
    return files


@dataclass(frozen=True)
class AofLocation:
    directory: Path  # dir + appenddirname
    manifest: str  # file name of the manifest


def locate(client: redis.Redis, target: Target) -> AofLocation:
    """Where the server keeps its AOF; raise if AOF is off or the directory is not on this host."""
    try:
        persistence = client.info("persistence")
        config = client.config_get("dir", "appenddirname", "appendfilename")
    except redis.RedisError as error:
        raise explain_failure(error, target, "INFO/CONFIG GET") from None
    if not persistence.get("aof_enabled"):
        raise RedkeepError(f"{target.where} has appendonly off: there is no AOF to back up")
    if "appenddirname" not in config:
        raise RedkeepError(
            f"{target.where} runs Redis before 7.0 (single-file AOF); use --type rdb"
        )
    directory = Path(config["dir"]) / config["appenddirname"]
    if not directory.is_dir():
        raise RedkeepError(
            f"AOF capture needs the Redis data directory on this machine, and {directory} is not "
            "here: run the backup on the Redis host, or use --type rdb"
        )
    return AofLocation(directory, f"{config['appendfilename']}.manifest")


@contextlib.contextmanager
def rewrites_paused(client: redis.Redis, target: Target, lock: AofLock) -> Iterator[None]:
    """Pause automatic AOF rewrites; restore the previous value however the block ends.

    The previous value is kept in the lock file while paused: a run killed with SIGKILL cannot
    put it back, so the next run finds it there and puts it back instead of taking the 0 it
    would read from the server for the user's own setting.
    """
    left_by_a_killed_run = lock.saved()
    try:
        previous = left_by_a_killed_run or client.config_get(REWRITE_SETTING)[REWRITE_SETTING]
        lock.save(previous)
        client.config_set(REWRITE_SETTING, 0)
    except redis.RedisError as error:
        raise explain_failure(error, target, f"CONFIG SET {REWRITE_SETTING}") from None
    try:
        yield
    finally:
        try:
            client.config_set(REWRITE_SETTING, previous)
        except redis.RedisError as error:
            raise RedkeepError(
                f"could not restore {REWRITE_SETTING} {previous} on {target.where}: {error}; "
                f"set it by hand: CONFIG SET {REWRITE_SETTING} {previous}"
            ) from None
        lock.save("")


def wait_for_no_rewrite(client: redis.Redis, target: Target, timeout: float = WAIT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = client.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        if time.monotonic() > deadline:
            raise RedkeepError(f"an AOF rewrite on {target.where} ran longer than {timeout:g}s")
        time.sleep(0.1)


@dataclass
class AofSnapshot:
    """Links (or copies) of the AOF files, with the sizes to read: a point in time. Its
    caller holds the server's AOF backup lock until the tar is written."""

    workdir: Path
    manifest: str
    files: list[AofFile]
    sizes: dict[str, int]
    linked: bool

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def remove_stale_workdirs(location: AofLocation) -> None:
    """Links left by a run that was killed (SIGKILL) would keep old AOF files on disk for
    ever. Holding the lock, no other run is using one: remove them."""
    for stale in location.directory.parent.glob(f"{WORKDIR_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)


def snapshot(
    client: redis.Redis, target: Target, location: AofLocation, lock: AofLock
) -> AofSnapshot:
    """Take a consistent snapshot of the AOF files, per the official procedure (`lock` held)."""
    workdir = None
    try:
        remove_stale_workdirs(location)
        with rewrites_paused(client, target, lock):
            wait_for_no_rewrite(client, target)
            manifest_path = location.directory / location.manifest
            files = parse_manifest(manifest_path.read_text(), str(manifest_path))
            names = [location.manifest] + [item.name for item in files if item.kind in "bi"]
            workdir, linked = _workdir(location.directory)
            sizes = {}
            for name in names:
                source, copy = location.directory / name, workdir / name
                sizes[name] = source.stat().st_size
                if linked:
                    os.link(source, copy)
                else:
                    _copy_prefix(source, copy, sizes[name])
    except BaseException:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    return AofSnapshot(workdir, location.manifest, files, sizes, linked)


def _workdir(directory: Path) -> tuple[Path, bool]:
    """A temp dir for the links: beside the AOF directory (same filesystem) when allowed."""
    try:
        workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=directory.parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="redkeep-aof-")), False
    probe = workdir / ".probe"
    try:
        os.link(directory / next(iter(os.listdir(directory))), probe)
        probe.unlink()
        return workdir, True
    except (OSError, StopIteration):
        return workdir, False


def _copy_prefix(source: Path, destination: Path, size: int) -> None:
    with source.open("rb") as reader, destination.open("wb") as writer:
        remaining = size
        while remaining:
            data = reader.read(min(remaining, 1 << 20))
            if not data:
                break
            writer.write(data)
            remaining -= len(data)


def write_tar(snapshot: AofSnapshot, writer, dirname: str = "appendonlydir") -> None:
    """Stream the snapshot as an uncompressed tar (`appendonlydir/...`) into `writer`."""
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, size in snapshot.sizes.items():
            info = tarfile.TarInfo(f"{dirname}/{name}")
            info.size = size
            info.mode = 0o600
            info.mtime = int(time.time())
            with (snapshot.workdir / name).open("rb") as handle:
                tar.addfile(info, _Limited(handle, size))


class _Limited:
    """Reads at most `size` bytes: an incr file may have grown since the snapshot."""

    def __init__(self, handle, size: int) -> None:
        self.handle = handle
        self.remaining = size

    def read(self, n: int = -1) -> bytes:
        n = self.remaining if n < 0 else min(n, self.remaining)
        data = self.handle.read(n)
        self.remaining -= len(data)
        return data
