"""restore --to-url copies in batches that hold about BATCH_BYTES of values at once."""

import pytest
import redis

from redkeep.backup.transfer import BATCH_BYTES, _sized, copy_keys
from redkeep.errors import RedkeepError

MIB = 1 << 20


def test_big_keys_are_copied_in_small_batches(redis_factory):
    source, target = redis_factory(), redis_factory()
    client = redis.Redis(port=source.port)
    for i in range(8):
        client.setrange(f"big:{i}", 10 * MIB - 1, b"x")  # 10 MiB each, made by the server
    client.set("small", "v")
    groups = list(_sized(client, [[*client.keys("big:*"), b"small"]]))
    assert sorted(key for group in groups for key in group) == sorted(client.keys())
    for group in groups:
        sizes = [client.memory_usage(key) for key in group]
        assert len(group) == 1 or sum(sizes) <= BATCH_BYTES, sizes
    copied = copy_keys(
        lambda db: redis.Redis(port=source.port, db=db),
        lambda db: redis.Redis(port=target.port, db=db),
        [0],
        replace=False,
    )
    assert copied.keys == {"db0": 9}
    other = redis.Redis(port=target.port)
    assert other.strlen("big:7") == 10 * MIB and other.get("small") == b"v"


def copy_db0(source, target) -> None:
    """copy_keys of db 0 between two servers, without --replace."""
    copy_keys(
        lambda db: redis.Redis(port=source.port, db=db),
        lambda db: redis.Redis(port=target.port, db=db),
        [0],
        replace=False,
    )


def test_a_refused_restore_says_how_many_keys_the_target_now_holds(redis_factory):
    source = redis_factory()
    target = redis_factory(["user default on nopass ~allowed:* +@all"])
    client = redis.Redis(port=source.port)
    client.mset({"denied:1": "a", **{f"allowed:{i}": "b" for i in range(5)}, "denied:2": "c"})
    with pytest.raises(RedkeepError) as raised:
        copy_db0(source, target)
    written = redis.Redis(port=target.port).dbsize()
    assert written == 5  # every allowed key of the batch went in, before and after the refusal
    assert "RESTORE of key b'denied:" in raised.value.message
    # Redis's error code, which redis-py moves into the exception's class, is in the message.
    assert "failed: NOPERM " in raised.value.message
    assert f"; {written} keys were written, so the target now holds part" in raised.value.message


def test_a_restore_refused_for_memory_says_oom(redis_factory):
    source = redis_factory()
    target = redis_factory(["maxmemory-policy noeviction"])
    redis.Redis(port=source.port).set("k", "v")
    redis.Redis(port=target.port).config_set("maxmemory", 1)  # below what it already uses
    with pytest.raises(RedkeepError) as raised:
        copy_db0(source, target)
    assert "failed: OOM command not allowed when used memory > 'maxmemory'" in raised.value.message
    assert redis.Redis(port=target.port).dbsize() == 0
