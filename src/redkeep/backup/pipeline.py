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
        codec = zstandard.ZstdDecompressor().decompressobj()
        return CodecSink(_guard(codec.decompress, kind), _zstd_end(codec), downstream)
    if kind == "gzip":
        codec = zlib.decompressobj(31)
        return CodecSink(_guard(codec.decompress, kind), _gzip_end(codec), downstream)
    return downstream


def _guard(function: Callable[[bytes], bytes], kind: str) -> Callable[[bytes], bytes]:
    def guarded(data: bytes) -> bytes:
        try:
            return function(data)
        except (zstandard.ZstdError, zlib.error) as error:
            raise PipelineError(f"{kind} data is damaged: {error}") from None

    return guarded


def _zstd_end(codec) -> Callable[[], bytes]:
    def end() -> bytes:
        if not codec.eof:
            raise PipelineError("zstd data is truncated: the frame does not end")
        return b""

    return end


def _gzip_end(codec) -> Callable[[], bytes]:
    def end() -> bytes:
        if not codec.eof:
            raise PipelineError("gzip data is truncated: the stream does not end")
        return codec.flush()

    return end


class SinkFile:
    """A file object forwarding writes to a sink (what pyrage and tarfile write into)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, data: bytes) -> int:
        self.sink.write(bytes(data))
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
        with os.fdopen(read_fd, "rb", buffering=1 << 20) as reader:
            try:
                pyrage.encrypt_io(reader, SinkFile(self.downstream), recipients)
            except BaseException as error:  # reported to the writer by close()
                self._error = error

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


class FileSink:
    """The end of a chain that writes into an open file; closing it does not close the file."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def write(self, data: bytes) -> None:
        self.handle.write(data)

    def close(self) -> None:
        self.handle.flush()

    def abort(self) -> None:
        pass
