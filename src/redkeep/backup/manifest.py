"""A backup's manifest: what was captured, from where, how it is stored, how to check it.

Layout in a store: `<source>/<backup id>/<objects>`, `manifest.json` written last. The id is
the UTC start time plus a random suffix, so ids sort by time and never collide.
"""

import datetime as dt
import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from redkeep import __version__
from redkeep.errors import DamagedBackup, UsageError

MANIFEST = "manifest.json"
REPORT = "report.json"
VERIFIED = "verify.json"
FORMAT = 1
ID_TIME = "%Y%m%dT%H%M%SZ"


SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_source(name: str) -> str:
    """Return `name` if it can name a source (one path segment, a safe metrics label)."""
    if not SOURCE_NAME.fullmatch(name):
        raise UsageError(
            f"source name {name!r}: use letters, digits, '.', '_' and '-' (starting with a "
            "letter or digit)"
        )
    return name


def new_backup_id(now: dt.datetime) -> str:
    return f"{now.strftime(ID_TIME)}-{secrets.token_hex(2)}"


def time_of(backup_id: str) -> dt.datetime:
    """When the backup with this id started."""
    return dt.datetime.strptime(backup_id.split("-", maxsplit=1)[0], ID_TIME).replace(tzinfo=dt.UTC)


def object_key(source: str, backup_id: str, name: str) -> str:
    return f"{source}/{backup_id}/{name}"


@dataclass
class StoredObject:
    name: str
    content: str  # "rdb" or "aof" (a tar of the AOF directory)
    size: int  # bytes stored
    sha256: str  # of the bytes stored
    raw_size: int  # before compression and encryption
    raw_sha256: str
    compression: str
    encryption: str


@dataclass
class Manifest:
    id: str
    source: str
    type: str  # rdb, aof or both
    created: str
    finished: str = ""
    duration_seconds: float = 0.0
    server: dict[str, Any] = field(default_factory=dict)
    keyspace: dict[str, dict] = field(default_factory=dict)  # "before"/"after" capture
    rdb: dict[str, Any] = field(default_factory=dict)
    aof: dict[str, Any] = field(default_factory=dict)
    objects: list[StoredObject] = field(default_factory=list)
    encryption: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT
    redkeep_version: str = __version__

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> "Manifest":
        try:
            raw = json.loads(data)
            raw["objects"] = [StoredObject(**item) for item in raw.get("objects", [])]
            if raw.get("format") != FORMAT:
                raise DamagedBackup(f"{where}: manifest format {raw.get('format')} is not {FORMAT}")
            return cls(**raw)
        except (ValueError, TypeError, KeyError) as error:
            raise DamagedBackup(f"{where}: damaged manifest ({error})") from None

    def object(self, content: str) -> StoredObject | None:
        return next((item for item in self.objects if item.content == content), None)
