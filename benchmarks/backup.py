"""`backup run` against `redis-cli --rdb - | zstd -3 | age -r KEY > file`, same server, same run.

Also: peak RSS of `backup run` on a dataset of more than 1 GiB, and `backup verify` against
redis-server loading the raw RDB.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pyrage
import redis

from benchmarks.harness import REDKEEP, Server, alternate, median, need, peak_rss_mib, timed

RUNS = 5
KEYS = 1_000_000
VALUE = 22  # bytes; with rdbcompression off the RDB is about 33 MB, as the issue sets
BIG_KEYS = 4_000_000
BIG_VALUE = 300


def backup_command(server: Server, dest: Path, recipient: str) -> list[str]:
    return [
        REDKEEP,
        "backup",
        "run",
        "--url",
        server.url,
        "--dest",
        str(dest),
        "--source",
        "bench",
        "--age-recipient",
        recipient,
        "--compress",
        "zstd",
        "--json",
    ]


def peer_pipeline(server: Server, out: Path, recipient: str) -> str:
    return (
        f"{need('redis-cli')} -p {server.port} --rdb - 2>/dev/null | {need('zstd')} -3 -q | "
        f"{need('age')} -r {recipient} > {out}"
    )


def run_time_ratio(work: Path, identity) -> dict:
    recipient = str(identity.to_public())
    server = Server(
        "--repl-diskless-sync-delay",
        "0",
        "--enable-debug-command",
        "yes",
        "--rdbcompression",
        "no",
    )
    try:
        server.client.execute_command("DEBUG", "POPULATE", KEYS, "key", VALUE)
        rdb_size = _rdb_size(server, work)

        def ours() -> float:
            dest = work / "ours"
            shutil.rmtree(dest, ignore_errors=True)
            return timed(backup_command(server, dest, recipient), stdout=subprocess.DEVNULL)

        def peer() -> float:
            return timed(peer_pipeline(server, work / "peer.rdb.zst.age", recipient))

        times = alternate(RUNS, ours=ours, peer=peer)
        ours_size = sum(p.stat().st_size for p in (work / "ours").rglob("*.age"))
        peer_size = (work / "peer.rdb.zst.age").stat().st_size
        verify = _verify_vs_load(server, work, identity)
    finally:
        server.stop()
    return {
        "keys": KEYS,
        "rdb_bytes": rdb_size,
        "ours": times["ours"],
        "peer": times["peer"],
        "ratio": median(times["ours"]) / median(times["peer"]),
        "ours_stored": ours_size,
        "peer_stored": peer_size,
        **verify,
    }


def _rdb_size(server: Server, work: Path) -> int:
    path = work / "probe.rdb"
    subprocess.run(
        [need("redis-cli"), "-p", str(server.port), "--rdb", str(path)],
        check=True,
        capture_output=True,
    )
    size = path.stat().st_size
    path.unlink()
    return size


def _verify_vs_load(server: Server, work: Path, identity) -> dict:
    key_file = work / "identity.txt"
    key_file.write_text(f"{identity}\n")
    verify_times = [
        timed(
            [
                REDKEEP,
                "backup",
                "verify",
                "latest",
                "--dest",
                str(work / "ours"),
                "--source",
                "bench",
                "--age-identity",
                str(key_file),
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    raw = work / "raw"
    raw.mkdir(exist_ok=True)
    subprocess.run(
        [need("redis-cli"), "-p", str(server.port), "--rdb", str(raw / "dump.rdb")],
        check=True,
        capture_output=True,
    )
    load_times = [_load_time(raw) for _ in range(3)]
    return {"verify": verify_times, "load": load_times}


def _load_time(directory: Path) -> float:
    """Wall time from starting redis-server on an RDB until it has loaded it."""
    socket_path = directory / "load.sock"
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            need("redis-server"),
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--dir",
            str(directory),
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(directory / "load.log"),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(unix_socket_path=str(socket_path))
    try:
        while True:
            try:
                if not client.info("persistence")["loading"]:
                    return time.perf_counter() - started
            except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError):
                pass
            time.sleep(0.01)
    finally:
        process.terminate()
        process.wait()


def peak_rss(work: Path, identity) -> dict:
    server = Server(
        "--repl-diskless-sync-delay",
        "0",
        "--enable-debug-command",
        "yes",
        "--rdbcompression",
        "no",
        "--maxmemory",
        "0",
    )
    try:
        server.client.execute_command("DEBUG", "POPULATE", BIG_KEYS, "big", BIG_VALUE)
        used = int(server.client.info("memory")["used_memory"])
        dest = work / "big"
        command = backup_command(server, dest, str(identity.to_public()))
        rss = peak_rss_mib(command)
        report = json.loads(next((work / "big").rglob("report.json")).read_text())
    finally:
        server.stop()
    return {"used_memory": used, "rdb_raw": report["bytes_raw"], "rss_mib": rss}


def run() -> dict:
    for binary in ("redis-server", "redis-cli", "zstd", "age"):
        need(binary)
    identity = pyrage.x25519.Identity.generate()
    work = Path(tempfile.mkdtemp(prefix="redkeep-bench-backup-"))
    load_before = os.getloadavg()[0]
    try:
        result = run_time_ratio(work, identity)
        result["load_avg"] = [load_before, os.getloadavg()[0]]  # the machine is shared
        result["big"] = peak_rss(work, identity)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


__all__ = ["redis", "run"]
