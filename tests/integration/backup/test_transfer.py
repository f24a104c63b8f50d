"""restore --to-url copies in batches that hold about BATCH_BYTES of values at once."""

import redis

from redkeep.backup.transfer import BATCH_BYTES, _sized, copy_keys

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
