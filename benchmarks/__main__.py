"""`make bench`: run every benchmark and write docs/benchmarks.md."""

import datetime as dt
from pathlib import Path

from benchmarks import backup
from benchmarks.harness import machine, median

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def fmt(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def render_backup(result: dict) -> str:
    big = result["big"]
    mib = 1 << 20
    verify, load = median(result["verify"]), median(result["load"])
    verdict = "meets" if result["ratio"] <= 1.1 else "misses"
    rss_verdict = "meets" if big["rss_mib"] <= 100 else "misses"
    return f"""## Backups (issue 3)

Peer: `redis-cli --rdb - | zstd -3 | age -r KEY > file`. Ours: `redkeep backup run --url URL
--dest DIR --age-recipient KEY --compress zstd` (RDB over replication, CRC64 check, zstd level 3,
age, local directory, manifest and report). Same loopback redis-server
(`repl-diskless-sync-delay 0`, `rdbcompression no`), {result["keys"]:,} keys from
`DEBUG POPULATE` (RDB {result["rdb_bytes"] / mib:.1f} MiB), runs alternated, {len(result["ours"])} each.

| | median wall time | runs (s) | stored |
|---|---|---|---|
| redkeep backup run | {median(result["ours"]):.2f} s | {fmt(result["ours"])} | {result["ours_stored"] / mib:.1f} MiB |
| redis-cli \\| zstd \\| age | {median(result["peer"]):.2f} s | {fmt(result["peer"])} | {result["peer_stored"] / mib:.1f} MiB |

Ratio ours/peer: **{result["ratio"]:.2f}** (target <= 1.1: {verdict}). Our time includes starting
Python and loading redkeep, INFO before and after the capture, the report and manifest, and the
read-back check that the stored bytes are age ciphertext.

Peak RSS of `redkeep backup run` on a {big["used_memory"] / (1 << 30):.2f} GiB dataset (RDB
{big["rdb_raw"] / (1 << 30):.2f} GiB, `rdbcompression no`): **{big["rss_mib"]:.0f} MiB** (target <= 100 MiB:
{rss_verdict}). The RDB streams through in 1 MiB chunks; it is never held whole.

`redkeep backup verify` (download, SHA-256, decrypt, decompress, CRC64, `redis-check-rdb`, drill
restore into a throw-away redis-server, keyspace comparison, sampled DUMP/RESTORE round trip): median **{verify:.2f} s**
({fmt(result["verify"])}), against **{load:.2f} s** ({fmt(result["load"])}) for redis-server
alone loading the raw RDB: {verify / load:.1f}x.
"""


def main() -> None:
    backup_result = backup.run()
    text = f"""# Benchmarks

Measured by `make bench` (`python -m benchmarks`), which runs redkeep and the named peer side by
side in one run and rewrites this file. Machine: {machine()}. Run on
{dt.datetime.now(dt.UTC):%Y-%m-%d}. This machine is small and shared: read the medians, not
single runs.

{render_backup(backup_result)}"""
    OUT.write_text(text)
    print(text)


main()
