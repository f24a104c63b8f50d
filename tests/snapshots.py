"""What a stored backup's snapshot holds, judged from the RDB on disk: restored to a file with
`redkeep backup restore --to-file` and its records counted (backup/rdbkeys.py)."""

from pathlib import Path

from redkeep.backup.rdbkeys import file_keyspace
from tests.conftest import run_redkeep


def stored_keyspace(dest: Path, backup_id: str, work: Path, **kwargs) -> dict:
    """{"dbN": {"keys", "expires"}} of backup `backup_id`'s RDB in `dest`."""
    path = work / f"{backup_id}.rdb"
    restored = run_redkeep(
        "backup", "restore", backup_id, "--dest", dest, "--to-file", path, **kwargs
    )
    assert restored.returncode == 0, restored.stderr
    return file_keyspace(path)
