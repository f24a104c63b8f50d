"""A backup's manifest: what was captured, from where, how it is stored, how to check it.

Layout in a store: `<source>/<backup id>/<objects>`, `manifest.json` written last. The id is
the UTC start time plus a random suffix, so ids sort by time and never collide.
"""

import datetime as dt
import json
import re
import secrets
from dataclasses import asdict, dataclass, field, replace
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


# What each backup type holds.
KINDS = {"rdb": ("rdb",), "aof": ("aof",), "both": ("rdb", "aof")}
COMPRESSIONS = ("zstd", "gzip", "none")
OBJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
DB_NAME = re.compile(r"db\d{1,5}")


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
    # A cluster backup: its shards (slot ranges, where each was captured, its RDB record and
    # object) and how the slot map was checked. {} for a single server.
    cluster: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT
    redkeep_version: str = __version__

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        """Parse a manifest; raise DamagedBackup (one line) for anything that is not one."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            if raw.get("format") != FORMAT:
                raise DamagedBackup(
                    f"its manifest has format {raw.get('format')!r}, not {FORMAT} (a newer "
                    "redkeep wrote it?)"
                )
            objects = raw.get("objects", [])
            if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
                raise ValueError("'objects' is not a list of objects")
            raw["objects"] = [StoredObject(**item) for item in objects]
            manifest = cls(**raw)
            manifest._check()
        except (ValueError, TypeError, KeyError) as error:
            raise DamagedBackup(f"its manifest is damaged ({error})") from None
        return manifest

    def _check(self) -> None:
        """Types and values the commands rely on; raise ValueError naming the first bad one."""
        for name in ("id", "source", "type", "created"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"'{name}' is not a string")
        created = dt.datetime.fromisoformat(self.created)
        if created.tzinfo is None:
            raise ValueError(f"'created' {self.created!r} has no time zone")
        if self.type not in KINDS:
            raise ValueError(f"type {self.type!r} is not one of {', '.join(KINDS)}")
        for item in self.objects:
            _check_object(item)
        for window, counts in self.keyspace.items():
            _check_counts(counts, f"keyspace.{window}")
        if not isinstance(self.rdb, dict) or not isinstance(self.encryption, dict):
            raise ValueError("'rdb' or 'encryption' is not an object")
        if "keyspace" in self.rdb:
            _check_counts(self.rdb["keyspace"], "rdb.keyspace")
        if self.cluster:
            _check_cluster(self)

    def check_identity(self, source: str, backup_id: str) -> None:
        """Raise DamagedBackup unless this manifest describes the backup at `source/backup_id`
        with the objects its type implies: a manifest copied from elsewhere must not vouch
        for (or fail) another backup's objects."""
        if (self.source, self.id) != (source, backup_id):
            raise DamagedBackup(
                f"its manifest describes backup {self.source}/{self.id}, not {source}/{backup_id}"
            )
        missing = [c for c in KINDS[self.type] if self.object(c) is None]
        if missing:
            raise DamagedBackup(
                f"its manifest lists no {' or '.join(missing)} object for a {self.type} backup"
            )

    @property
    def shards(self) -> list[dict[str, Any]]:
        """A cluster backup's shards (empty for a single server)."""
        return self.cluster.get("shards", []) if self.cluster else []

    def shard_view(self, index: int) -> "Manifest":
        """Shard `index` of a cluster backup as a single server's backup: its RDB record and
        object, so verify and restore treat each shard as they treat one server."""
        shard = self.shards[index]
        objects = [item for item in self.objects if item.name == shard["object"]]
        return replace(
            self,
            rdb=shard["rdb"],
            objects=objects,
            keyspace={"before": shard.get("keyspace", {})},
            cluster={},
        )

    @property
    def started(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.created)

    def object(self, content: str) -> StoredObject | None:
        return next((item for item in self.objects if item.content == content), None)


def _check_object(item: StoredObject) -> None:
    if not isinstance(item.name, str) or not OBJECT_NAME.fullmatch(item.name):
        raise ValueError(f"object name {item.name!r} is not a plain file name")
    if item.content not in ("rdb", "aof") or item.compression not in COMPRESSIONS:
        raise ValueError(f"object {item.name}: unknown content or compression")
    for name in ("size", "raw_size"):
        if not isinstance(getattr(item, name), int) or getattr(item, name) < 0:
            raise ValueError(f"object {item.name}: '{name}' is not a size")
    if not all(isinstance(v, str) for v in (item.sha256, item.raw_sha256, item.encryption)):
        raise ValueError(f"object {item.name}: a digest or the encryption is not a string")


def _check_counts(counts: Any, where: str) -> None:
    """{"dbN": {"keys": int, "expires": int}}, N below 100,000."""
    if not isinstance(counts, dict):
        raise ValueError(f"'{where}' is not an object")
    for db, sizes in counts.items():
        if not DB_NAME.fullmatch(db) or not isinstance(sizes, dict):
            raise ValueError(f"'{where}' names {db!r}, not a database (db0 to db99999)")
        for field_name in ("keys", "expires"):
            value = sizes.get(field_name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"'{where}.{db}.{field_name}' is not a count")


def _check_cluster(manifest: Manifest) -> None:
    """A cluster backup: shards that each name one of its RDB objects, with slot ranges."""
    shards = manifest.cluster.get("shards")
    if not isinstance(shards, list) or not shards:
        raise ValueError("'cluster.shards' is not a list of shards")
    names = {item.name for item in manifest.objects if item.content == "rdb"}
    for index, shard in enumerate(shards):
        if not isinstance(shard, dict) or shard.get("object") not in names:
            raise ValueError(f"cluster shard {index} names no RDB object of the backup")
        slots = shard.get("slots")
        if not isinstance(slots, list) or not all(
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in pair)
            for pair in slots
        ):
            raise ValueError(f"cluster shard {index}: 'slots' is not a list of [first, last]")
        if not isinstance(shard.get("rdb"), dict):
            raise ValueError(f"cluster shard {index}: 'rdb' is not an object")
        if "keyspace" in shard["rdb"]:
            _check_counts(shard["rdb"]["keyspace"], f"cluster.shards[{index}].rdb.keyspace")
