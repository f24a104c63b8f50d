"""The RDB walk: counts what an RDB holds, stops without counts on what it does not know, and
never holds up or fails the capture it listens to."""

import io
import os

import pytest

from redkeep.backup.rdb import crc64
from redkeep.backup.rdbkeys import KeyCounter, Unknown, walk


def rdb(body: bytes, magic: bytes = b"REDIS0010") -> bytes:
    data = magic + body + b"\xff"
    return data + crc64(data).to_bytes(8, "little")


def string(value: bytes) -> bytes:
    assert len(value) < 64
    return bytes([len(value)]) + value


# db0: two strings, one with a millisecond TTL; db3: a list and an LZF-compressed string.
BODY = (
    b"\xfa"
    + string(b"redis-ver")
    + string(b"7.0.15")
    + b"\xfe\x00\xfb\x02\x01"
    + b"\x00"
    + string(b"a")
    + string(b"1")
    + b"\xfc"
    + (10**12).to_bytes(8, "little")
    + b"\x00"
    + string(b"b")
    + b"\xc0\x05"
    + b"\xfe\x03\xfb\x02\x00"
    + b"\x01"
    + string(b"list")
    + b"\x02"
    + string(b"x")
    + string(b"y")
    + b"\x00"
    + string(b"lzf")
    + b"\xc3\x03\x0a"
    + b"abc"
)


def test_counts_keys_and_expires_per_database():
    counts = walk(io.BytesIO(rdb(BODY)))
    assert counts == {
        "db0": {"keys": 2, "expires": 1, "resizedb_keys": 2, "resizedb_expires": 1},
        "db3": {"keys": 2, "expires": 0, "resizedb_keys": 2, "resizedb_expires": 0},
    }


def test_a_big_value_is_skipped_in_pieces():
    big = 3 << 20
    body = b"\xfe\x00\x00" + string(b"big") + b"\x80" + big.to_bytes(4, "big") + b"z" * big
    assert walk(io.BytesIO(rdb(body)))["db0"]["keys"] == 1


@pytest.mark.parametrize(
    "data, why",
    [
        (rdb(BODY)[:-20], "ends before its EOF opcode"),
        (rdb(BODY) + b"extra", "bytes follow"),
        (rdb(b"\xfe\x00\x63" + string(b"k")), "value type 99"),
        (rdb(b"\xfe\x00\x16" + string(b"k"), b"REDIS0011"), "value type 22"),  # 22: not in RDB 11
    ],
)
def test_what_it_cannot_walk_ends_without_counts(data, why):
    with pytest.raises(Unknown, match=why):
        walk(io.BytesIO(data))


def test_the_counter_gives_up_quietly_and_never_blocks_the_writer():
    counter = KeyCounter()
    counter.feed(rdb(b"\xfe\x00\x63" + string(b"k")))  # an unknown type: the walk stops ...
    for _ in range(16):
        counter.feed(os.urandom(1 << 20))  # ... and the rest is drained, not left in a pipe
    assert counter.finish() is None
    assert "value type 99" in counter.problem


def test_the_counter_counts_a_stream_fed_in_small_pieces():
    counter = KeyCounter()
    data = rdb(BODY)
    for start in range(0, len(data), 3):
        counter.feed(data[start : start + 3])
    assert counter.finish() == {"db0": {"keys": 2, "expires": 1}, "db3": {"keys": 2, "expires": 0}}
