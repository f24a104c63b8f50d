"""The replication framing, against a scripted peer that splits, stalls and drops at will.

A real redis-server cannot be made to split its end mark at a chosen byte or to go silent,
so these cases use a loopback peer that speaks the same bytes; the integration tests run the
same code against real servers.
"""

import socket
import threading
import time
import unittest.mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redkeep.backup import replication
from redkeep.backup.rdb import RdbError, check_rdb_bytes, crc64
from redkeep.backup.replication import _read_until_mark, capture_rdb
from redkeep.errors import RedisCommandError, StreamError
from redkeep.redis.target import Target

MARK = b"0123456789abcdef0123456789abcdef01234567"


def rdb(size: int = 100) -> bytes:
    data = b"REDIS0010" + bytes(range(256)) * (size // 256 + 1)
    data = data[: 9 + size] + b"\xff"
    return data + crc64(data).to_bytes(8, "little")


class Chunks:
    """Stands in for RawConnection.read_into(): hands out pre-cut chunks (a chunk larger than
    the reader's buffer is handed out over several reads)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.target = Target("redis", host="fake", port=1)

    def read_into(self, view: memoryview) -> int:
        if not self.chunks:
            raise RdbError("fake peer closed")
        chunk = self.chunks.pop(0)
        count = min(len(chunk), len(view))
        view[:count] = chunk[:count]
        if count < len(chunk):
            self.chunks.insert(0, chunk[count:])
        return count


def split_reads(stream_bytes: bytes, sizes: list[int]) -> list[bytes]:
    """`stream_bytes` as reads of these sizes (the rest in one last read), none empty."""
    chunks, position = [], 0
    for size in sizes:
        chunks.append(stream_bytes[position : position + size])
        position += size
    chunks.append(stream_bytes[position:])
    return [chunk for chunk in chunks if chunk]


@settings(max_examples=200)
@given(
    st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=30), st.integers(0, 3)
)
def test_end_mark_found_wherever_the_reads_split(sizes, trailing_newlines):
    payload = rdb(300)
    stream_bytes = payload + MARK + b"\n" * trailing_newlines
    chunks = split_reads(stream_bytes, sizes)
    received = bytearray()
    size = _read_until_mark(Chunks(chunks), MARK, received.extend)
    assert bytes(received) == payload
    assert size == len(payload)


@settings(max_examples=200)
@given(
    st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=30),
    st.integers(1, 120),
)
def test_end_mark_found_when_reads_are_gathered_and_passed_on(sizes, pass_on):
    """Reads are gathered and passed on every PASS_ON bytes (set small here): the bytes kept
    back for a straddling mark are never lost, doubled or passed on as payload."""
    payload = rdb(900)
    stream_bytes = payload + MARK + b"\n"
    chunks = split_reads(stream_bytes, sizes)
    received = bytearray()
    with unittest.mock.patch.object(replication, "PASS_ON", pass_on):
        size = _read_until_mark(Chunks(chunks), MARK, received.extend)
    assert bytes(received) == payload
    assert size == len(payload)


def test_one_byte_at_a_time():
    payload = rdb(120)
    received = bytearray()
    _read_until_mark(Chunks([bytes([b]) for b in payload + MARK]), MARK, received.extend)
    assert bytes(received) == payload


class Peer:
    """A loopback peer that answers the handshake and then follows a script."""

    def __init__(self, script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            buffer = b""
            while b"PSYNC" not in buffer:
                buffer += conn.recv(4096)
                while buffer.count(b"REPLCONF") > buffer.count(b"+OK-sent"):
                    conn.sendall(b"+OK\r\n")
                    buffer += b"+OK-sent"
            conn.sendall(b"+FULLRESYNC 8371b4fb1155b71f4a04d3e1bc3e18c4a990aeeb 42\r\n")
            self.script(conn)

    def target(self) -> Target:
        return Target("redis", host="127.0.0.1", port=self.port, timeout=2)


def test_keepalive_newlines_then_length_framing():
    payload = rdb(5000)

    def script(conn):
        for _ in range(3):
            conn.sendall(b"\n")
            time.sleep(0.01)
        conn.sendall(b"$%d\r\n" % len(payload) + payload)

    received = bytearray()
    capture = capture_rdb(Peer(script).target(), received.extend, idle_timeout=2)
    assert (capture.transfer, capture.replid[:6], capture.offset) == ("disk", "8371b4", 42)
    assert check_rdb_bytes(bytes(received)).checksum == "ok"


def test_diskless_framing_end_to_end():
    payload = rdb(70000)

    def script(conn):
        conn.sendall(b"$EOF:" + MARK + b"\r\n")
        for start in range(0, len(payload), 7000):
            conn.sendall(payload[start : start + 7000])
        conn.sendall(MARK + b"\n\n")
        time.sleep(0.2)

    received = bytearray()
    capture = capture_rdb(Peer(script).target(), received.extend)
    assert capture.transfer == "diskless" and bytes(received) == payload


def test_a_peer_that_drops_mid_transfer_is_an_error():
    payload = rdb(5000)

    def script(conn):
        conn.sendall(b"$%d\r\n" % len(payload) + payload[:2000])

    with pytest.raises(StreamError, match=r"closed the connection after \d+ bytes"):
        capture_rdb(Peer(script).target(), lambda chunk: None)


def test_silence_beyond_the_idle_timeout_is_an_error():
    def script(conn):
        conn.sendall(b"$EOF:" + MARK + b"\r\n" + b"REDIS0010")
        time.sleep(1.5)

    with pytest.raises(StreamError, match=r"sent nothing for 0.5s"):
        capture_rdb(Peer(script).target(), lambda chunk: None, idle_timeout=0.5)


def test_an_error_reply_to_psync_is_explained():
    def script(conn):
        pass

    class Refusing(Peer):
        def _serve(self):
            conn, _ = self.listener.accept()
            with conn:
                conn.recv(4096)
                refusal = b"-NOPERM this user has no permissions to run the 'psync' command\r\n"
                conn.sendall(b"+OK\r\n" * 3 + refusal)  # REPLCONF capa, version, rdb-only
                time.sleep(0.2)

    with pytest.raises(RedisCommandError, match="may not run PSYNC .*NOPERM.*backup user"):
        capture_rdb(Refusing(script).target(), lambda chunk: None)


@pytest.mark.parametrize("framing", ["disk", "diskless"])
def test_a_payload_larger_than_the_read_buffer_arrives_whole(framing):
    """Several MiB: the reused read buffer is filled, passed on and refilled many times."""
    payload = rdb(3 * replication.READ_BUFFER + 12345)

    def script(conn):
        if framing == "disk":
            conn.sendall(b"$%d\r\n" % len(payload) + payload)
        else:
            conn.sendall(b"$EOF:" + MARK + b"\r\n" + payload + MARK)
        time.sleep(0.2)

    received = bytearray()
    capture = capture_rdb(Peer(script).target(), received.extend, idle_timeout=2)
    assert capture.transfer == framing and capture.size == len(payload)
    assert bytes(received) == payload
    assert check_rdb_bytes(bytes(received)).checksum == "ok"
