"""The `--json` outputs of `redkeep backup` against the tables in docs/backups.md ("JSON
output"): every key printed is documented with its type, every key documented as *always* is
printed, and every documented key is seen in one of the outputs (so the tables cannot keep a
key the code no longer writes)."""

import json
import re
from pathlib import Path

import pytest
import redis

from tests.conftest import run_redkeep
from tests.servers import free_port

DOC = Path(__file__).parents[3] / "docs" / "backups.md"
# Keys only a cluster backup prints: test_cluster_backup.py checks that they are seen.
CLUSTER_ONLY = {
    "backup run --json": {
        "cluster",
        "cluster.attempts",
        "cluster.shards",
        "cluster.shards[]",
        *(
            f"cluster.shards[].{key}"
            for key in (
                "index",
                "slots",
                "primary",
                "captured_from",
                "capture_reason",
                "captured_role",
                "object",
                "keys",
            )
        ),
    },  # fmt: skip
    "backup list --json": {"[].shards"},
    "backup restore --to-url --json": {
        "shards",
        "shards[]",
        "shards[].index",
        "shards[].to",
        "shards[].restored",
    },  # fmt: skip
}
# Keys no test here can make appear (they need a cluster).
NOT_SEEN_HERE = CLUSTER_ONLY

TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
}


def fits(value, spelled: str) -> bool:
    """`value` against a type of the tables: a TYPES name or `array of NAME`."""
    if spelled.startswith("array of "):
        element = TYPES[spelled.removeprefix("array of ")]
        return isinstance(value, list) and all(element(item) for item in value)
    return TYPES[spelled](value)


def documented_shapes() -> dict[str, dict[tuple[str, ...], tuple[str, bool]]]:
    """{section title: {key path: (type, always)}} from the tables under "## JSON output"."""
    text = DOC.read_text().split("## JSON output", 1)[1].split("\n## ", 1)[0]
    shapes = {}
    for title, body in re.findall(r"^### `([^`]+)`\n(.*?)(?=^### |\Z)", text, re.M | re.S):
        rows = re.findall(r"^\| `([^`]+)` \| ([^|]+?) \| ([^|]+?) \|", body, re.M)
        shapes[title] = {
            tuple(key.split(".")): (spelled, present.startswith("always"))
            for key, spelled, present in rows
        }
    return shapes


SHAPES = documented_shapes()


def paths(value, prefix: tuple[str, ...] = ()):
    """(path, value) of every key under `value`: an array's elements are `name[]`."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key), item
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        head = (*prefix[:-1], prefix[-1] + "[]") if prefix else ("[]",)
        for item in value:
            if isinstance(item, dict | list):
                yield head, item
                yield from paths(item, head)


def matches(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if len(pattern) != len(path):
        return False
    return all(part in ("*", key) for part, key in zip(pattern, path, strict=True))


def check_shape(title: str, outputs: list, complete: bool = True) -> set[str]:
    """Every output against the documented shape; together they show every documented key
    (unless not `complete`: outputs of one kind, e.g. a cluster's, checked elsewhere).
    Return the documented keys seen."""
    shape = SHAPES[title]
    seen = set()
    for output in outputs:
        parents = [((), output)] if isinstance(output, dict) else []
        for path, value in paths(output):
            pattern = next((p for p in shape if matches(p, path)), None)
            assert pattern is not None, f"{title}: {'.'.join(path)} is not documented"
            spelled, _ = shape[pattern]
            assert fits(value, spelled), f"{title}: {'.'.join(path)} is not {spelled}: {value!r}"
            seen.add(pattern)
            if isinstance(value, dict):
                parents.append((path, value))
        for path, value in parents:
            for pattern, (_, always) in shape.items():
                if always and len(pattern) == len(path) + 1 and matches(pattern[:-1], path):
                    assert pattern[-1] in value, f"{title}: {'.'.join(pattern)} is missing"
    if complete:
        unseen = {".".join(p) for p in shape if p not in seen} - NOT_SEEN_HERE.get(title, set())
        assert not unseen, f"{title}: documented but never printed: {sorted(unseen)}"
    return {".".join(p) for p in seen}


def redkeep_json(*args, status: int = 0, env=None):
    result = run_redkeep(*args, "--json", env=env)
    assert result.returncode == status, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_the_tables_are_read():
    assert set(SHAPES) == {
        "backup run --json",
        "backup list --json",
        "backup verify --json",
        "backup restore --to-file --json",
        "backup restore --to-url --json",
        "backup prune --json",
    }
    assert SHAPES["backup run --json"][("notifications[]", "channel")] == ("string", True)
    assert SHAPES["backup run --json"][("pruned",)] == ("array of string", False)


@pytest.fixture
def dest(backup_bundle, tmp_path) -> Path:
    """A store holding one backup of the bundle's dataset, `both` RDB and AOF."""
    where = tmp_path / "dest"
    run = ("backup", "run", "--dir", backup_bundle.root, "--dest", where, "--type", "both")
    assert redkeep_json(*run)["result"] == "success"
    return where


def test_backup_run(backup_bundle, tmp_path):
    # A failing metrics file and webhook: warnings and a failed notification; the bundle
    # prunes after the run.
    stored = redkeep_json(
        "backup",
        "run",
        "--dir",
        backup_bundle.root,
        "--dest",
        tmp_path / "dest",
        "--metrics-file",
        "/proc/redkeep-no-such-dir/backup.prom",
        "--notify-on-success",
        env={"BACKUP_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook"},
    )
    assert stored["warnings"] and stored["notifications"][0]["ok"] is False
    failed = redkeep_json(
        "backup",
        "run",
        "--dir",
        backup_bundle.root,
        "--url",
        f"redis://127.0.0.1:{free_port()}",
        status=3,
    )
    assert failed["result"] == "failure"
    check_shape("backup run --json", [stored, failed])
    # report.json holds the report as it was stored: before notifying, pruning, metrics.
    report = tmp_path / "dest" / stored["source"] / stored["id"] / "report.json"
    after_the_run = ("notifications", "pruned", "warnings")
    assert json.loads(report.read_text()) == {
        key: value for key, value in stored.items() if key not in after_the_run
    }


def test_backup_list(backup_bundle, dest):
    bad = redkeep_json("backup", "run", "--dir", backup_bundle.root, "--dest", dest)
    (dest / bad["source"] / bad["id"] / "manifest.json").write_text("{}")
    listing = redkeep_json("backup", "list", "--dest", dest)
    assert sorted(row["damaged"] for row in listing) == [False, True]
    check_shape("backup list --json", [listing])


def test_backup_verify(backup_bundle, dest, read_only, tmp_path):
    source, view = read_only
    verified = redkeep_json("backup", "verify", "--dir", backup_bundle.root, "--dest", dest)
    assert verified["result"] == "ok"
    # The verdict of a copy on a read-only mount cannot be stored.
    (source / "copy").mkdir()
    for path in dest.glob("*/*/*"):
        if path.name != "verify.json":
            target = source / "copy" / path.relative_to(dest)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    unrecorded = redkeep_json(
        "backup", "verify", "--dir", backup_bundle.root, "--dest", view / "copy", status=1
    )
    assert "record_error" in unrecorded
    damaged_object = next(dest.glob("*/*/appendonlydir.tar*"))
    damaged_object.write_bytes(damaged_object.read_bytes()[:-10])
    failed = redkeep_json("backup", "verify", "--dir", backup_bundle.root, "--dest", dest, status=1)
    assert failed["result"] == "failed"
    check_shape("backup verify --json", [verified, unrecorded, failed])


def test_backup_restore_to_file(backup_bundle, dest, tmp_path):
    args = ("backup", "restore", "latest", "--dir", backup_bundle.root, "--dest", dest)
    planned = redkeep_json(*args, "--to-file", tmp_path / "dump.rdb", "--dry-run")
    written = redkeep_json(*args, "--to-file", tmp_path / "dump.rdb")
    assert (tmp_path / "dump.rdb").read_bytes().startswith(b"REDIS")
    check_shape("backup restore --to-file --json", [planned, written])


def test_backup_restore_to_url(backup_bundle, dest, redis_factory):
    args = ("backup", "restore", "latest", "--dir", backup_bundle.root, "--dest", dest)
    busy, empty = redis_factory(), redis_factory()
    redis.Redis(port=busy.port).set("mine", "kept")
    planned = redkeep_json(
        *args, "--to-url", f"redis://127.0.0.1:{busy.port}", "--replace", "--dry-run"
    )
    restored = redkeep_json(*args, "--to-url", f"redis://127.0.0.1:{empty.port}")
    assert restored["restored"]["db0"] > 0 and redis.Redis(port=empty.port).dbsize() > 0
    check_shape("backup restore --to-url --json", [planned, restored])


def test_backup_prune(backup_bundle, dest):
    redkeep_json("backup", "run", "--dir", backup_bundle.root, "--dest", dest)
    pruned = redkeep_json("backup", "prune", "--dest", dest, "--keep-last", "1", "--dry-run")
    assert [row["action"] for row in pruned] == ["keep", "delete"]
    check_shape("backup prune --json", [pruned])
