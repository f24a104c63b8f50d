"""Where backups are kept: a local directory or an S3 bucket, behind one small interface.

Keys are relative paths: `<source>/<backup id>/<object>`. A backup is complete when its
`manifest.json` exists; data objects are written first, the manifest last.
"""

from typing import BinaryIO, Protocol

from redkeep.backup.store_local import LocalStore
from redkeep.errors import UsageError


class ObjectWriter(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...  # commit: the object appears under its key
    def abort(self) -> None: ...  # nothing appears, nothing is left behind


class Store(Protocol):
    url: str

    def writer(self, key: str, size_hint: int = 0) -> ObjectWriter: ...
    def reader(self, key: str) -> BinaryIO: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def head(self, key: str, length: int) -> bytes: ...
    def list_objects(self, prefix: str = "") -> dict[str, int]: ...
    def delete(self, keys: list[str]) -> None: ...
    def discard(self, prefix: str) -> None: ...  # everything under prefix, unfinished too


def open_store(dest: str, s3_options: dict | None = None) -> Store:
    """The store for `dest`: a path, file:///path, or s3://bucket/prefix."""
    if dest.startswith("s3://"):
        from redkeep.backup.store_s3 import S3Store  # noqa: PLC0415 - boto3 loads slowly

        return S3Store.from_url(dest, **(s3_options or {}))
    path = dest.removeprefix("file://")
    if not path.strip() or ("://" in path):
        raise UsageError(
            f"backup destination {dest!r}: use a directory path, file:///path or s3://bucket/prefix"
        )
    return LocalStore.at(path)
