"""A 3-shard cluster's `backup run` against `redis-cli --cluster backup`, same cluster, same run.

The peer fetches one RDB per primary, one after another, and neither compresses nor encrypts.
Ours captures the shards at once and compresses (zstd) and encrypts (age) each, with the
defaults a user gets. Each primary holds KEYS keys made by `DEBUG POPULATE` under a hash tag of
a slot it serves, so every key is where the cluster routes it. Plain TCP for both (the peer's
`--cluster backup` is run the way its docs show it).

Alternated with them, the floors on this machine: the three RDB streams read at once and
discarded by `redis-cli --rdb` (C, no per-byte work at all), and by redkeep's own replication
client in a bare Python process (benchmarks/capture_floor.py); and, beside ours, the same run
with no compression and no encryption (a tuned variant, never the headline figure).
"""

import hashlib
import io
import itertools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyrage
import zstandard
from redis.crc import key_slot

from benchmarks.harness import REDKEEP, Server, alternate, free_port, median, need, timed
from redkeep.backup.rdb import crc64
from redkeep.backup.rdbkeys import walk

RUNS = 5
SHARDS = 3
KEYS = 1_000_000
VALUE = 22  # bytes, as benchmarks/backup.py


def start_cluster() -> list[Server]:
    nodes = []
    try:
        for _ in range(SHARDS):
            nodes.append(
                Server(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    str(free_port()),
                    "--repl-diskless-sync-delay",
                    "0",
                    "--enable-debug-command",
                    "yes",
                    "--rdbcompression",
                    "no",
                )  # fmt: skip
            )
        per_shard = 16384 // SHARDS
        for k, node in enumerate(nodes):
            last = 16383 if k == SHARDS - 1 else (k + 1) * per_shard - 1
            node.client.execute_command("CLUSTER", "ADDSLOTSRANGE", k * per_shard, last)
            node.client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", k + 1)
        for node in nodes[1:]:
            bus = int(node.client.config_get("cluster-port")["cluster-port"])
            nodes[0].client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
        deadline = time.monotonic() + 60
        while not all(
            b"cluster_state:ok" in node.client.execute_command("CLUSTER", "INFO") for node in nodes
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        for k, node in enumerate(nodes):
            first = k * per_shard
            tag = next(str(i) for i in itertools.count() if key_slot(str(i).encode()) == first)
            node.client.execute_command("DEBUG", "POPULATE", KEYS, f"{{{tag}}}", VALUE)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def run() -> dict:
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="redkeep-bench-cluster-"))
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    nodes = start_cluster()
    try:
        seed = nodes[0]

        def ours() -> float:
            dest = work / "ours"
            shutil.rmtree(dest, ignore_errors=True)
            command = [
                REDKEEP, "backup", "run", "--url", seed.url, "--dest", str(dest),
                "--source", "bench", "--age-recipient", recipient, "--compress", "zstd",
                "--json",
            ]  # fmt: skip
            return timed(command, stdout=subprocess.DEVNULL)

        def peer() -> float:
            dest = work / "peer"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            command = [
                need("redis-cli"),
                "--cluster",
                "backup",
                f"127.0.0.1:{seed.port}",
                str(dest),
            ]
            return timed(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def plain() -> float:
            dest = work / "plain"
            shutil.rmtree(dest, ignore_errors=True)
            command = [
                REDKEEP, "backup", "run", "--url", seed.url, "--dest", str(dest),
                "--source", "bench", "--compress", "none", "--no-encrypt", "--json",
            ]  # fmt: skip
            return timed(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def floor_c() -> float:
            return _parallel(
                [need("redis-cli"), "-p", str(node.port), "--rdb", "-"] for node in nodes
            )

        def floor_python() -> float:
            command = [sys.executable, "-m", "benchmarks.capture_floor"]
            return timed([*command, *(node.url for node in nodes)])

        contenders = {
            "ours": ours,
            "peer": peer,
            "plain": plain,
            "floor_c": floor_c,
            "floor_python": floor_python,
        }
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        servers_cpu: dict[str, list[float]] = {name: [] for name in contenders}
        times = alternate(
            RUNS,
            **{
                name: _with_cpu(run, nodes, cpu[name], servers_cpu[name])
                for name, run in contenders.items()
            },
        )
        stages = stage_costs(nodes[0], work / "shard-0.rdb", recipient)
        ours_size = sum(p.stat().st_size for p in (work / "ours").rglob("*.age"))
        peer_size = sum(p.stat().st_size for p in (work / "peer").glob("*.rdb"))
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "shards": SHARDS,
        "keys": KEYS,
        "ours": times["ours"],
        "peer": times["peer"],
        "plain": times["plain"],
        "floor_c": times["floor_c"],
        "floor_python": times["floor_python"],
        "stages": stages,
        "cpu": cpu,
        "servers_cpu": servers_cpu,
        "ratio": median(times["ours"]) / median(times["peer"]),
        "ours_stored": ours_size,
        "peer_stored": peer_size,
        "load": [load_before, os.getloadavg()[0]],  # the machine is shared
    }


def stage_costs(node: Server, path: Path, recipient: str) -> dict:
    """CPU seconds of each kind of per-byte work on one shard's RDB, alone (fastest of 3), and
    the sizes zstd gives at each level."""
    subprocess.run(
        [need("redis-cli"), "-p", str(node.port), "--rdb", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    data = path.read_bytes()
    chunks = [data[start : start + (1 << 16)] for start in range(0, len(data), 1 << 16)]
    compressed = zstandard.ZstdCompressor(level=3).compress(data)
    costs = {"rdb_bytes": len(data)}
    work = {
        "crc64": lambda: crc64(data),
        "sha256": lambda: hashlib.sha256(data).digest(),
        "age": lambda: pyrage.encrypt(compressed, [pyrage.x25519.Recipient.from_str(recipient)]),
        "walk": lambda: walk(io.BufferedReader(io.BytesIO(data))),
    }
    for level in (1, 2, 3):
        work[f"zstd{level}"] = lambda level=level: costs.__setitem__(
            f"zstd{level}_bytes", _compress(chunks, level)
        )
    for name, task in work.items():
        costs[name] = min(_cpu_of(task) for _ in range(3))
    return costs


def _compress(chunks: list[bytes], level: int) -> int:
    """Stored size of `chunks` through the pipeline's zstd stream at `level`."""
    codec = zstandard.ZstdCompressor(level=level).compressobj()
    return sum(len(codec.compress(chunk)) for chunk in chunks) + len(codec.flush())


def _cpu_of(task) -> float:
    started = time.process_time()
    task()
    return time.process_time() - started


def _with_cpu(run, nodes: list[Server], own: list[float], servers: list[float]):
    """`run`, also recording the CPU seconds of its processes (user + system) and of the
    servers (INFO cpu, their forks included) into `own` and `servers`."""

    def measured() -> float:
        _wait_for_forks(nodes)
        servers_before, own_before = _servers_cpu(nodes), _children_cpu()
        elapsed = run()
        own.append(_children_cpu() - own_before)
        _wait_for_forks(nodes)  # a fork's CPU shows in INFO once the server has reaped it
        servers.append(_servers_cpu(nodes) - servers_before)
        return elapsed

    return measured


def _wait_for_forks(nodes: list[Server]) -> None:
    """Until no server has a snapshot child: none is left over to slow the next contender."""
    deadline = time.monotonic() + 60
    while any(node.client.info("persistence")["rdb_bgsave_in_progress"] for node in nodes):
        if time.monotonic() > deadline:
            raise RuntimeError("a server's snapshot child did not end within 60 s")
        time.sleep(0.02)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _servers_cpu(nodes: list[Server]) -> float:
    fields = ("used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children")
    return sum(float(node.client.info("cpu")[field]) for node in nodes for field in fields)


def _parallel(commands) -> float:
    """Wall time of commands run all at once, until the last ends; fails loudly."""
    started = time.perf_counter()
    running = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for command in commands
    ]
    codes = [process.wait() for process in running]
    elapsed = time.perf_counter() - started
    if any(codes):
        raise RuntimeError(f"a floor capture failed (exit codes {codes})")
    return elapsed


if __name__ == "__main__":
    print(run())
