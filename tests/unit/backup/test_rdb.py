import pytest
from hypothesis import given
from hypothesis import strategies as st

from redkeep.backup.rdb import RdbError, RdbValidator, check_rdb_bytes, crc64


def rdb(body: bytes = b"\xfa\x09redis-ver\x067.0.15", version: bytes = b"0010") -> bytes:
    """A minimal RDB: magic, an AUX field, EOF opcode, CRC64 trailer."""
    data = b"REDIS" + version + body + b"\xff"
    return data + crc64(data).to_bytes(8, "little")


def test_crc64_is_redis_jones_crc():
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    assert crc64(b"6789", crc64(b"12345")) == 0xE9C6D914C4B8D9CA


def test_a_good_rdb_checks_ok():
    check = check_rdb_bytes(rdb())
    assert (check.engine, check.version, check.checksum) == ("redis", 10, "ok")


def test_valkey_9_magic_is_known():
    data = b"VALKEY080" + b"\xff"
    check = check_rdb_bytes(data + crc64(data).to_bytes(8, "little"))
    assert (check.engine, check.version) == ("valkey", 80)


def test_zero_trailer_is_unverifiable_not_ok():
    data = rdb()[:-8] + bytes(8)
    assert check_rdb_bytes(data).checksum == "unverifiable"


def test_flipped_byte_is_a_checksum_mismatch():
    data = bytearray(rdb())
    data[12] ^= 0x01
    with pytest.raises(RdbError, match="checksum mismatch"):
        check_rdb_bytes(bytes(data))


@pytest.mark.parametrize("cut", [1, 5, 9, 12])
def test_truncated_rdb_is_an_error(cut):
    with pytest.raises(RdbError, match="truncated|not an RDB"):
        check_rdb_bytes(rdb()[:-cut])


def test_unknown_version_is_refused_loudly():
    with pytest.raises(RdbError, match="unknown RDB version 99"):
        check_rdb_bytes(rdb(version=b"0099"))


def test_not_an_rdb():
    with pytest.raises(RdbError, match="not an RDB file"):
        check_rdb_bytes(b"GIF89a" + bytes(40))


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_chunking_never_changes_the_verdict(body, cuts):
    data = rdb(body)
    points = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    validator = RdbValidator()
    for start, end in zip(points, points[1:], strict=False):
        validator.feed(data[start:end])
    assert validator.finish() == check_rdb_bytes(data)
