"""Checks of a `restore --to-url` target before anything is written to it.

The target must read the backup's RDB version and what the drill server DUMPs, have the
databases and the memory the backup needs, and let one client hold the largest key
(proto-max-bulk-len, client-query-buffer-limit, maxmemory-clients).
"""

import itertools
import os
from dataclasses import dataclass

import redis
from redis.crc import key_slot

from redkeep.backup import drill
from redkeep.backup.manifest import Manifest
from redkeep.backup.rdb import crc64
from redkeep.backup.unpack import describe
from redkeep.errors import RedkeepError, UsageError
from redkeep.redis.target import Target

# A string value "redkeep" serialized as in DUMP: type 0, then the string, before the footer.
_PROBE_VALUE = b"\x00\x07redkeep"


def probe_payload(rdb_version: int) -> bytes:
    """A DUMP payload of a short string in RDB format `rdb_version` (footer: version, CRC64)."""
    body = _PROBE_VALUE + rdb_version.to_bytes(2, "little")
    return body + crc64(body).to_bytes(8, "little")


def probe_name(client: redis.Redis) -> str:
    """A scratch key name for the probes; on a cluster node, one in a slot it serves (a
    name of another node's slot would only get MOVED)."""
    name = f"redkeep:restore-probe:{os.getpid()}"
    if str(client.info("cluster").get("cluster_enabled")) != "1":
        return name
    slot = _first_served_slot(client)
    tag = next(str(i) for i in itertools.count() if key_slot(str(i).encode()) == slot)
    return f"{name}:{{{tag}}}"


def _first_served_slot(client: redis.Redis) -> int:
    reply = client.execute_command("CLUSTER", "NODES")
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 8 and "myself" in fields[2].split(","):
            return int(fields[8].split("-")[0])
    raise RedkeepError("this cluster node serves no slot: assign slots before restoring into it")


def require_target_reads(client: redis.Redis, target: Target, manifest: Manifest) -> None:
    """Refuse, before anything is downloaded, a target older than the backup's RDB version:
    RESTORE of a tiny payload in that version, under a scratch name, then deleted."""
    version = manifest.rdb.get("version")
    if manifest.object("rdb") is None or not isinstance(version, int):
        return
    probe = probe_name(client)
    try:
        client.restore(probe, 60_000, probe_payload(version), replace=True)
    except redis.ResponseError as error:
        if "payload version" not in str(error):
            raise
        info = client.info("server")
        flavour = "Valkey" if info.get("server_name") == "valkey" else "Redis"
        running = info.get("valkey_version") or info.get("redis_version")
        raise RedkeepError(
            f"{target.where} runs {flavour} {running}, which cannot load RDB version {version} "
            f"of {describe(manifest)}: restore into a server at least as new as the one "
            "that made the backup"
        ) from None
    finally:
        client.delete(probe)


@dataclass(frozen=True)
class ClientLimits:
    no_evict: bool  # CLIENT NO-EVICT on is allowed: maxmemory-clients cannot evict the restore
    warnings: tuple[str, ...]


def preflight(
    client: redis.Redis, target: Target, server: drill.Drill, plan: dict[str, dict]
) -> ClientLimits:
    """Refuse, before any write, a target that cannot hold the backup."""
    config = _config(
        client,
        "databases",
        "maxmemory-clients",
        "proto-max-bulk-len",
        "client-query-buffer-limit",
        "client-output-buffer-limit",
    )
    highest = max((int(db[2:]) for db in plan), default=0)
    databases = int(config.get("databases", 0))
    if databases and highest >= databases:
        raise UsageError(
            f"{target.where} has {databases} databases, but the backup uses db{highest}; "
            f"raise `databases` there first"
        )
    needed = int(server.client().info("memory")["used_memory"])
    memory = client.info("memory")
    limit = int(memory.get("maxmemory", 0))
    if limit and int(memory.get("used_memory", 0)) + needed > limit:
        raise UsageError(
            f"{target.where} has maxmemory {limit >> 20} MiB; the backup needs about "
            f"{needed >> 20} MiB more than is in use: raise maxmemory first"
        )
    limits = _client_limits(client, target, server, plan, config, limit)
    _probe_restore(client, target, server, plan)
    return limits


def _config(client: redis.Redis, *names: str) -> dict[str, str]:
    try:
        return client.config_get(*names)
    except redis.RedisError:
        return {}  # CONFIG GET not allowed: RESTORE will tell


def _client_limits(
    client: redis.Redis,
    target: Target,
    server: drill.Drill,
    plan: dict[str, dict],
    config: dict[str, str],
    maxmemory: int,
) -> ClientLimits:
    """The largest key against what one client may hold on the target.

    RESTORE puts the whole payload in the client's query buffer: beyond proto-max-bulk-len
    Redis refuses it, and beyond maxmemory-clients Redis evicts (disconnects) the client in
    the middle of the restore, unless it runs with CLIENT NO-EVICT on (7.0+, when allowed).
    """
    largest, where = largest_key(server, plan)
    no_evict = _no_evict(client)
    warnings: list[str] = []
    if not largest:
        return ClientLimits(no_evict, tuple(warnings))
    size = f"{largest / MIB:.1f} MiB ({where})"
    bulk = int(config.get("proto-max-bulk-len") or 0)
    if bulk and largest > bulk:
        raise UsageError(
            f"the largest key of the backup is {size}, more than {target.where}'s "
            f"proto-max-bulk-len {bulk / MIB:.0f} MiB: raise proto-max-bulk-len there first"
        )
    query = int(config.get("client-query-buffer-limit") or 0)
    if query and largest * CLIENT_MEMORY_FACTOR > query:
        raise UsageError(
            f"the largest key of the backup is {size}; {target.where} disconnects a client "
            f"whose query buffer exceeds {query / MIB:.0f} MiB (client-query-buffer-limit): "
            "raise it there first"
        )
    output = _normal_output_limit(config.get("client-output-buffer-limit", ""))
    if output and largest > output:
        warnings.append(
            f"the largest key is {size}; {target.where} disconnects normal clients whose "
            f"output buffer exceeds {output / MIB:.1f} MiB (client-output-buffer-limit "
            "normal): applications reading it will be cut off unless that limit is raised"
        )
    clients = _maxmemory_clients(config.get("maxmemory-clients", "0"), maxmemory)
    if clients and largest * CLIENT_MEMORY_FACTOR > clients:
        if not no_evict:
            raise UsageError(
                f"the largest key of the backup is {size}; {target.where} evicts a client "
                f"holding more than {clients / MIB:.1f} MiB (maxmemory-clients), so the restore "
                "would be cut off midway: raise maxmemory-clients there, or restore as a user "
                "allowed CLIENT NO-EVICT (the bundle's admin)"
            )
        warnings.append(
            f"the largest key is {size}; {target.where} evicts clients holding more than "
            f"{clients / MIB:.1f} MiB (maxmemory-clients): applications reading it will be "
            "disconnected unless that limit is raised"
        )
    return ClientLimits(no_evict, tuple(warnings))


MIB = 1 << 20
# A client receiving a RESTORE holds its payload in the query buffer, and a little more.
CLIENT_MEMORY_FACTOR = 1.25


def _maxmemory_clients(value: str, maxmemory: int) -> int:
    """maxmemory-clients in bytes: a number, or a percentage of maxmemory (0: no limit)."""
    value = str(value).strip()
    if value.endswith("%"):
        return maxmemory * int(value[:-1]) // 100
    return int(value) if value.isdigit() else 0


def _normal_output_limit(value: str) -> int:
    """The hard limit of the `normal` class in client-output-buffer-limit (0: none)."""
    words = str(value).split()
    for start in range(0, len(words) - 3, 4):
        if words[start] == "normal" and words[start + 1].isdigit():
            return int(words[start + 1])
    return 0


def _no_evict(client: redis.Redis) -> bool:
    try:
        client.execute_command("CLIENT", "NO-EVICT", "on")
    except redis.ResponseError:  # before 7.0, or not allowed to this user
        return False
    return True


def largest_key(server: drill.Drill, plan: dict[str, dict]) -> tuple[int, str]:
    """The DUMP size of the largest key (by MEMORY USAGE) in the drill server, and where it is:
    what RESTORE will put in the target's query buffer."""
    largest, where, found = 0, "", None
    for db in plan:
        client = server.client(int(db[2:]))
        for keys in _scan_batches(client):
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key, samples=0)  # every element: a sample can miss a big one
            for key, size in zip(keys, pipe.execute(), strict=True):
                if (size or 0) > largest:
                    largest, where, found = size, f"key {key!r} in {db}", (db, key)
        client.close()
    if found is None:
        return 0, ""
    client = server.client(int(found[0][2:]))
    payload = client.dump(found[1])
    client.close()
    return (len(payload) if payload else largest), where


def _scan_batches(client: redis.Redis):
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, count=500)
        if keys:
            yield keys
        if cursor == 0:
            return


def _probe_restore(
    client: redis.Redis, target: Target, server: drill.Drill, plan: dict[str, dict]
) -> None:
    """RESTORE one small real payload under a scratch name: the target can read what the
    drill server DUMPs (its own RDB version, which may be newer than the backup's)."""
    if not plan:
        return
    source = server.client(int(next(iter(plan))[2:]))
    keys = list(itertools.islice(source.scan_iter(count=10), 10))
    sizes = [source.memory_usage(key, samples=0) or 0 for key in keys]
    payload = source.dump(min(zip(sizes, keys, strict=True))[1]) if keys else None
    source.close()
    if payload is None:
        return
    probe = probe_name(client)
    try:
        client.restore(probe, 60_000, payload, replace=True)
    except redis.ResponseError as error:
        version = int.from_bytes(payload[-10:-8], "little")
        raise RedkeepError(
            f"{target.where} cannot load the drill server's data ({str(error).splitlines()[0]}; "
            f"it writes RDB version {version}): restore with --server-binary pointing at a "
            "server no newer than the target, or into a newer target"
        ) from None
    finally:
        client.delete(probe)
