"""Bring a stored backup object back: download, check SHA-256, decrypt, decompress, check.

One pass over the stored bytes. A damaged object is reported as such (SHA-256 mismatch)
even when decryption or decompression notices first.
"""

import hashlib
from typing import BinaryIO

import pyrage

from redkeep.backup.manifest import StoredObject
from redkeep.backup.pipeline import (
    HashingSink,
    PipelineError,
    SinkFile,
    TeeSink,
    decompressor,
)
from redkeep.backup.rdb import RdbError, RdbValidator
from redkeep.backup.stores import Store
from redkeep.errors import DamagedBackup, RedkeepError

CHUNK = 1 << 20


class OutputError(RedkeepError):
    """Writing the restored bytes here failed (a full disk): it says nothing about the backup."""


class OutputSink:
    """The end of the chain: writes into an open file (closing the sink does not close it)."""

    def __init__(self, handle: BinaryIO, where: str) -> None:
        self.handle = handle
        self.where = where

    def write(self, data: bytes) -> None:
        try:
            self.handle.write(data)
        except OSError as error:
            raise self._failure(error) from None

    def close(self) -> None:
        try:
            self.handle.flush()
        except OSError as error:
            raise self._failure(error) from None

    def abort(self) -> None:
        pass

    def _failure(self, error: OSError) -> OutputError:
        return OutputError(
            f"cannot write the restored data to {self.where}: {error.strerror or error}; "
            "free space there (or point TMPDIR elsewhere for verify) and try again"
        )


class HashingReader:
    """A reader that hashes and counts what is read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def fetch_object(
    store: Store,
    key: str,
    item: StoredObject,
    identities: list,
    out: BinaryIO,
    validator: RdbValidator | None = None,
    where: str = "the output file",
) -> None:
    """Write the original bytes of stored object `item` into `out` (the file at `where`);
    raise if anything is off. A failure to write `out` is an OutputError, never damage."""
    reader = HashingReader(store.reader(key))
    raw = HashingSink(OutputSink(out, where))
    head = decompressor(item.compression, TeeSink(validator.feed, raw) if validator else raw)
    into = SinkFile(head)
    try:
        try:
            if item.encryption != "none":
                pyrage.decrypt_io(reader, into, identities)
            else:
                while data := reader.read(CHUNK):
                    into.write(data)
            head.close()
        finally:
            close = getattr(reader.stream, "close", None)
            if close:
                reader.drain()
                close()
    except OutputError:
        raise
    except (pyrage.DecryptError, PipelineError, RdbError, OSError) as error:
        if isinstance(into.error, OutputError):  # pyrage wraps what its output raised
            raise into.error from None
        # pyrage reports damaged ciphertext as OSError("decryption error"); a damaged object
        # is named as such whichever stage noticed first.
        _check_digest(reader, item, key)
        raise _explain(error, key) from None
    _check_digest(reader, item, key)
    if raw.sha256.hexdigest() != item.raw_sha256:
        raise DamagedBackup(f"{key}: restored bytes differ from what was backed up (SHA-256)")


def _check_digest(reader: HashingReader, item: StoredObject, key: str) -> None:
    if reader.sha256.hexdigest() != item.sha256 or reader.size != item.size:
        raise DamagedBackup(
            f"{key} is damaged: its SHA-256 (or size {reader.size}) differs from the manifest's; "
            "restore another backup"
        )


def _explain(error: Exception, key: str) -> RedkeepError:
    """A wrong key is the caller's problem; anything else means the stored data is bad."""
    if isinstance(error, pyrage.DecryptError):
        if "No matching keys" in str(error) or "no identity" in str(error).lower():
            return RedkeepError(
                f"cannot decrypt {key}: none of the given identities matches its recipients; "
                "pass the right --age-identity or --passphrase-file"
            )
        return DamagedBackup(f"cannot decrypt {key}: {error}")
    if isinstance(error, OSError) and "decryption" in str(error):
        return DamagedBackup(f"cannot decrypt {key}: the ciphertext does not authenticate")
    if isinstance(error, RedkeepError):
        return DamagedBackup(f"{key}: {error.message}")
    return DamagedBackup(f"{key}: {error}")
