"""The backup pipeline as a chain of sinks: check -> compress -> encrypt -> hash -> store.

Every stage has `write(bytes)`, `close()` (finish and commit) and `abort()` (discard). Data
flows through in chunks; nothing holds a whole backup. Encryption is age (pyrage) on a thread
fed through a pipe, because pyrage reads from a file object rather than accepting pushes.
"""

import contextlib
import hashlib
import os
import threading
import zlib
from collections.abc import Callable
from typing import Protocol

import pyrage
import zstandard

from redkeep.errors import RedkeepError

SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}
AGE_MAGIC = b"age-encryption.org/v1"
OUTPUT_CHUNK = 1 << 20  # the most a decompressor passes on at once


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class PipelineError(RedkeepError):
    """A stage of the backup pipeline failed."""


class HashingSink:
    """Counts and SHA-256-hashes what passes through."""

    def __init__(self, downstream: Sink) -> None:
        self.downstream = downstream
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        self.downstream.write(data)

    def close(self) -> None:
        self.downstream.close()

    def abort(self) -> None:
        self.downstream.abort()


class TeeSink:
    """Shows every chunk to `inspect` (e.g. the RDB validator) before passing it on."""

    def __init__(self, inspect: Callable[[bytes], None], downstream: Sink) -> None:
        self.inspect = inspect
        self.downstream = downstream

    def write(self, data: bytes) -> None:
        self.inspect(data)
        self.downstream.write(data)

    def close(self) -> None:
        self.downstream.close()

    def abort(self) -> None:
        self.downstream.abort()


class CodecSink:
    """Compresses or decompresses through a zlib/zstd-style object (compress/flush)."""

    def __init__(
        self, transform: Callable[[bytes], bytes], flush: Callable[[], bytes], downstream: Sink
    ) -> None:
        self.transform = transform
        self.flush = flush
        self.downstream = downstream

    def write(self, data: bytes) -> None:
        out = self.transform(data)
        if out:
            self.downstream.write(out)

    def close(self) -> None:
        tail = self.flush()
        if tail:
            self.downstream.write(tail)
        self.downstream.close()

    def abort(self) -> None:
        self.downstream.abort()


def compressor(kind: str, downstream: Sink, level: int | None = None) -> Sink:
    """A sink that compresses with zstd (default level 3), gzip (6), or passes through."""
    if kind == "zstd":
        codec = zstandard.ZstdCompressor(level=level or 3).compressobj()
        return CodecSink(codec.compress, codec.flush, downstream)
    if kind == "gzip":
        codec = zlib.compressobj(level or 6, zlib.DEFLATED, 31)  # 31: gzip container
        return CodecSink(codec.compress, codec.flush, downstream)
    return downstream


def decompressor(kind: str, downstream: Sink) -> Sink:
    """A sink that undoes `compressor(kind)`; raises PipelineError on damaged input."""
    if kind == "zstd":
        return ZstdDecodeSink(downstream)
    if kind == "gzip":
        return GzipDecodeSink(downstream)
    return downstream


class ZstdDecodeSink:
    """Decompresses zstd, passing on at most OUTPUT_CHUNK bytes at a time: a backup that
    compressed 10,000:1 (zeros, a sparse bitmap) never needs its expanded size in memory.

    A truncated stream is found downstream: the RDB's end and CRC64, the raw SHA-256.
    """

    def __init__(self, downstream: Sink) -> None:
        self.downstream = downstream
        self._writer = zstandard.ZstdDecompressor().stream_writer(
            SinkFile(downstream), write_size=OUTPUT_CHUNK, closefd=False
        )

    def write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
        except zstandard.ZstdError as error:
            raise PipelineError(f"zstd data is damaged: {error}") from None

    def close(self) -> None:
        self.downstream.close()

    def abort(self) -> None:
        self.downstream.abort()


class GzipDecodeSink:
    """Decompresses gzip, passing on at most OUTPUT_CHUNK bytes at a time."""

    def __init__(self, downstream: Sink) -> None:
        self.downstream = downstream
        self._codec = zlib.decompressobj(31)  # 31: gzip container

    def write(self, data: bytes) -> None:
        while True:
            try:
                out = self._codec.decompress(data, OUTPUT_CHUNK)
            except zlib.error as error:
                raise PipelineError(f"gzip data is damaged: {error}") from None
            if out:
                self.downstream.write(out)
            data = self._codec.unconsumed_tail
            if not data and len(out) < OUTPUT_CHUNK:
                return

    def close(self) -> None:
        if not self._codec.eof:
            raise PipelineError("gzip data is truncated: the stream does not end")
        self.downstream.close()

    def abort(self) -> None:
        self.downstream.abort()


class SinkFile:
    """A file object forwarding writes to a sink (what pyrage and tarfile write into).

    It keeps the sink's exception: pyrage hands it back only as text, wrapped in its own.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        try:
            self.sink.write(bytes(data))
        except BaseException as error:
            self.error = error
            raise
        return len(data)

    def flush(self) -> None:
        pass


class AgeEncryptSink:
    """Encrypts to age recipients; output readable by `age -d -i IDENTITY`."""

    def __init__(self, recipients: list, downstream: Sink) -> None:
        self.downstream = downstream
        read_fd, self._write_fd = os.pipe()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(read_fd, recipients), name="age-encrypt", daemon=True
        )
        self._thread.start()

    def _run(self, read_fd: int, recipients: list) -> None:
        out = SinkFile(self.downstream)
        with os.fdopen(read_fd, "rb", buffering=1 << 20) as reader:
            try:
                pyrage.encrypt_io(reader, out, recipients)
            except BaseException as error:  # reported to the writer by close()
                self._error = out.error or error

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._write_fd, view)
                view = view[written:]
        except BrokenPipeError:
            self._finish()
            raise PipelineError("encryption stopped early") from self._error

    def _finish(self) -> None:
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, RedkeepError):
                raise error
            raise PipelineError(f"encryption failed: {error}") from error

    def close(self) -> None:
        self._finish()
        self.downstream.close()

    def abort(self) -> None:
        with contextlib.suppress(RedkeepError):
            self._finish()
        self.downstream.abort()
