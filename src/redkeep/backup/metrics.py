"""Prometheus textfile metrics of backup runs (for node_exporter's textfile collector).

An alert can fire when `time() - redkeep_backup_last_success_timestamp_seconds` grows, which
catches a job that stopped running, not only one that fails. A failed run keeps the previous
success time.
"""

from pathlib import Path

from redkeep.exporter.exposition import Family, read_textfile, write_textfile

PREFIX = "redkeep_backup_"
HELP = {
    "last_success_timestamp_seconds": "Unix time of the last successful backup.",
    "last_run_timestamp_seconds": "Unix time the last backup run finished.",
    "last_duration_seconds": "Duration of the last backup run.",
    "last_size_bytes": "Bytes stored by the last successful backup.",
    "last_result": "1 if the last backup run succeeded, 0 if it failed.",
}


def read_metrics(path: Path, source: str) -> dict[str, float]:
    """The values recorded for `source` in an existing metrics file ({} if there is none)."""
    return {
        family.name.removeprefix(PREFIX): value
        for family in read_textfile(path, PREFIX)
        for _, labels, value in family.samples
        if labels == {"source": source}
    }


def write_metrics(
    path: Path, source: str, ok: bool, finished: float, duration: float, size: int
) -> None:
    """Record one run of `source` in the textfile at `path`, keeping other sources' series.

    Written atomically: the collector never reads half a file.
    """
    old = read_metrics(path, source)
    success = finished if ok else old.get("last_success_timestamp_seconds")
    values: dict[str, float] = {}
    if success is not None:
        values["last_success_timestamp_seconds"] = success
    values |= {
        "last_run_timestamp_seconds": finished,
        "last_duration_seconds": round(duration, 3),
        "last_result": 1 if ok else 0,
    }
    size_bytes = size if ok else old.get("last_size_bytes")
    if size_bytes is not None:
        values["last_size_bytes"] = size_bytes
    families = {PREFIX + name: Family(PREFIX + name, "gauge", text) for name, text in HELP.items()}
    for family in read_textfile(path, PREFIX):
        if family.name in families:
            for _, labels, value in family.samples:
                if labels.get("source") != source:
                    families[family.name].add(value, labels)
    for name, value in values.items():
        families[PREFIX + name].add(value, {"source": source})
    for family in families.values():
        family.samples.sort(key=lambda sample: sample[1].get("source", ""))
    write_textfile(path, families.values())
