"""What sharing two cores costs a capture: the RDBs of the given servers through backup run's
whole chain (check, SHA-256, zstd, age, SHA-256, a local file), one after another and all at
once, rounds alternated; CPU seconds of this process and wall time of each.
`python -m benchmarks.capture_probe [--rounds N] URL...` (the servers need
`repl-diskless-sync-delay 0`; a snapshot child still running is waited for).
"""

import argparse
import concurrent.futures
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pyrage
import redis

from redkeep.backup.pipeline import AgeEncryptSink, HashingSink, TeeSink, compressor
from redkeep.backup.rdb import RdbValidator
from redkeep.backup.replication import capture_rdb
from redkeep.backup.store_local import LocalWriter
from redkeep.redis.target import parse_url


def capture(url: str, path: Path, recipients: list) -> None:
    """One capture through the chain `redkeep backup run` builds (actions/backup.py)."""
    stored = HashingSink(LocalWriter(path))
    raw = HashingSink(compressor("zstd", AgeEncryptSink(recipients, stored)))
    validator = RdbValidator()
    head = TeeSink(validator.feed, raw)
    capture_rdb(parse_url(url), head.write)
    validator.finish()
    head.close()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _settle(urls: list[str]) -> None:
    for url in urls:
        client = redis.Redis.from_url(url)
        while client.info("persistence")["rdb_bgsave_in_progress"]:
            time.sleep(0.02)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    recipients = [pyrage.x25519.Identity.generate().to_public()]
    work = Path(tempfile.mkdtemp(prefix="redkeep-probe-"))
    paths = [work / f"shard-{index}.zst.age" for index in range(len(args.urls))]

    def sequential() -> None:
        for url, path in zip(args.urls, paths, strict=True):
            capture(url, path, recipients)

    def parallel() -> None:
        with concurrent.futures.ThreadPoolExecutor(len(args.urls)) as pool:
            list(pool.map(capture, args.urls, paths, [recipients] * len(paths)))

    results: dict[str, list[tuple[float, float]]] = {"sequential": [], "parallel": []}
    for _ in range(args.rounds):
        for name, run in (("sequential", sequential), ("parallel", parallel)):
            _settle(args.urls)
            cpu, started = _cpu(), time.perf_counter()
            run()
            results[name].append((_cpu() - cpu, time.perf_counter() - started))
    for path in paths:
        path.unlink(missing_ok=True)
    work.rmdir()
    for name, runs in results.items():
        cpus = ", ".join(f"{cpu:.2f}" for cpu, _ in runs)
        print(
            f"{name}: CPU median {statistics.median(c for c, _ in runs):.2f} s ({cpus}), "
            f"wall median {statistics.median(w for _, w in runs):.2f} s"
        )


if __name__ == "__main__":
    main()
