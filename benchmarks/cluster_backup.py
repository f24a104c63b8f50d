"""A 3-shard cluster's `backup run` against `redis-cli --cluster backup`, same cluster, same run.

The peer fetches one RDB per primary, one after another, and neither compresses nor encrypts.
Ours captures the shards at once and compresses (zstd) and encrypts (age) each. Each primary
holds KEYS keys made by `DEBUG POPULATE` under a hash tag of a slot it serves, so every key is
where the cluster routes it.
"""

import itertools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pyrage
from redis.crc import key_slot

from benchmarks.harness import REDKEEP, Server, alternate, free_port, median, need, timed

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

        times = alternate(RUNS, ours=ours, peer=peer)
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
        "ratio": median(times["ours"]) / median(times["peer"]),
        "ours_stored": ours_size,
        "peer_stored": peer_size,
    }


if __name__ == "__main__":
    print(run())
