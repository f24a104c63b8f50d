"""The RDB walk: counts what an RDB holds, stops without counts on what it does not know (and
`verify` then falls back to the INFO readings)."""

import io

import pytest

from redkeep.backup.rdb import crc64
from redkeep.backup.rdbkeys import Unknown, file_keyspace, walk
from redkeep.backup.unpack import Snapshot, read_snapshot


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


def test_a_downloaded_file_is_counted(tmp_path):
    path = tmp_path / "dump.rdb"
    path.write_bytes(rdb(BODY))
    expected = {"db0": {"keys": 2, "expires": 1}, "db3": {"keys": 2, "expires": 0}}
    assert file_keyspace(path) == expected
    assert read_snapshot(path) == Snapshot(expected)


def test_a_file_the_walk_cannot_read_gives_no_counts_and_says_why(tmp_path):
    path = tmp_path / "dump.rdb"
    path.write_bytes(rdb(b"\xfe\x00\x63" + string(b"k")))  # an unknown type
    snapshot = read_snapshot(path)
    assert snapshot.keyspace is None
    assert "value type 99" in snapshot.problem
