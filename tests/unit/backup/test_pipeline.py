"""Decompression hands data on in bounded chunks: a backup that compressed 10,000:1 never
needs its expanded size in memory (a sparse bitmap, a value of zeros)."""

import hashlib

import pytest

from redkeep.backup.pipeline import OUTPUT_CHUNK, PipelineError, compressor, decompressor

MIB = 1 << 20


class Collect:
    """A sink that keeps the compressed bytes (small here) or only a digest and sizes."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.data = bytearray()
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.largest = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.keep:
            self.data += data
        self.sha256.update(data)
        self.size += len(data)
        self.largest = max(self.largest, len(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        pass


def compressed_zeros(kind: str, mib: int) -> tuple[bytes, str]:
    out = Collect(keep=True)
    sink = compressor(kind, out)
    original = hashlib.sha256()
    for _ in range(mib):
        sink.write(bytes(MIB))
        original.update(bytes(MIB))
    sink.close()
    return bytes(out.data), original.hexdigest()


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_a_compression_bomb_comes_out_in_bounded_chunks(kind):
    data, digest = compressed_zeros(kind, 64)
    assert len(data) < MIB // 4  # it is a bomb: 64 MiB of zeros in a few KiB
    out = Collect()
    sink = decompressor(kind, out)
    sink.write(data)  # all at once: the worst case
    sink.close()
    assert out.size == 64 * MIB and out.sha256.hexdigest() == digest and out.closed
    assert out.largest <= OUTPUT_CHUNK


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_damaged_compressed_data_is_a_pipeline_error(kind):
    data, _ = compressed_zeros(kind, 1)
    damaged = bytearray(data)
    damaged[len(damaged) // 2 :] = b"\xff" * (len(damaged) - len(damaged) // 2)
    sink = decompressor(kind, Collect())
    with pytest.raises(PipelineError, match="damaged|truncated"):
        sink.write(bytes(damaged))
        sink.close()


def test_truncated_gzip_is_a_pipeline_error():
    data, _ = compressed_zeros("gzip", 1)
    sink = decompressor("gzip", Collect())
    sink.write(data[:-4])
    with pytest.raises(PipelineError, match="truncated"):
        sink.close()
