"""Backups in S3 or any S3-compatible store (MinIO, R2, ...), through boto3.

The endpoint comes from `AWS_ENDPOINT_URL` (boto3 reads it), credentials from the usual AWS
sources. Objects are uploaded with multipart uploads whose part size keeps a backup under the
10,000-part limit; a failed upload is aborted so no partial object or stray parts remain.
Checksums are sent only when required, which MinIO, R2 and older S3-compatibles accept.
"""

import contextlib
import math
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from redkeep.errors import StoreError, UsageError

MIB = 1 << 20
MIN_PART = 8 * MIB
MAX_PARTS = 10_000
# Leave room for a backup larger than its estimate.
PLANNED_PARTS = 9_000


def part_size_for(size_hint: int) -> int:
    """The part size for an object of about `size_hint` bytes: >= 8 MiB, whole MiB."""
    wanted = math.ceil(size_hint / PLANNED_PARTS) if size_hint > 0 else 0
    return max(MIN_PART, math.ceil(wanted / MIB) * MIB)


class S3Writer:
    """A multipart upload: parts go up as the buffer fills; `close` completes, `abort` aborts."""

    def __init__(self, store: "S3Store", key: str, part_size: int) -> None:
        self.store = store
        self.key = key
        self.part_size = part_size
        self._buffer = bytearray()
        self._parts: list[dict] = []
        response = store.call(
            "create_multipart_upload", Bucket=store.bucket, Key=key, **store.put_options
        )
        self._upload_id = response["UploadId"]

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= self.part_size:
            self._send(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]

    def _send(self, data: bytes) -> None:
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StoreError(f"{self.store.url}/{self.key}: more than {MAX_PARTS} parts")
        response = self.store.call(
            "upload_part",
            Bucket=self.store.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})

    def close(self) -> None:
        if self._buffer or not self._parts:
            self._send(bytes(self._buffer))
            self._buffer.clear()
        self.store.call(
            "complete_multipart_upload",
            Bucket=self.store.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        """Abort the upload: S3 drops its parts. Best effort while failing: a failed run's
        `discard` tries again, and a bucket lifecycle rule (AbortIncompleteMultipartUpload)
        catches what an unreachable store leaves."""
        self._buffer.clear()
        with contextlib.suppress(BotoCoreError, ClientError):
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self._upload_id
            )


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        sse: str | None = None,
        kms_key_id: str | None = None,
        storage_class: str | None = None,
        checksums: str = "when_required",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        config = Config(
            request_checksum_calculation=checksums,
            response_checksum_validation=checksums,
            retries={"max_attempts": 5, "mode": "standard"},
        )
        self.client = boto3.client("s3", config=config)
        self.put_options: dict[str, str] = {}
        if sse:
            self.put_options["ServerSideEncryption"] = sse
        if kms_key_id:
            self.put_options["SSEKMSKeyId"] = kms_key_id
        if storage_class:
            self.put_options["StorageClass"] = storage_class

    @classmethod
    def from_url(cls, url: str, **options) -> "S3Store":
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise UsageError(f"backup destination {url}: no bucket; use s3://bucket/prefix")
        return cls(bucket, prefix, **options)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def call(self, operation: str, **kwargs):
        """Call an S3 operation; turn its failure into one line that names bucket and key."""
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            key = kwargs.get("Key", kwargs.get("Prefix", ""))
            where = f"s3://{kwargs.get('Bucket', self.bucket)}/{key}"
            hint = {
                "NoSuchBucket": "create the bucket first",
                "AccessDenied": "the credentials lack permission",
                "NoSuchKey": "the object is missing",
                "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID",
                "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY",
            }.get(code, error.response.get("Error", {}).get("Message", ""))
            raise StoreError(f"{operation} on {where} failed ({code}): {hint}") from None
        except BotoCoreError as error:
            raise StoreError(f"{operation} on s3://{self.bucket} failed: {error}") from None

    def writer(self, key: str, size_hint: int = 0) -> S3Writer:
        return S3Writer(self, self._key(key), part_size_for(size_hint))

    def reader(self, key: str) -> BinaryIO:
        return self.call("get_object", Bucket=self.bucket, Key=self._key(key))["Body"]

    def put_bytes(self, key: str, data: bytes) -> None:
        self.call(
            "put_object", Bucket=self.bucket, Key=self._key(key), Body=data, **self.put_options
        )

    def get_bytes(self, key: str) -> bytes:
        return self.reader(key).read()

    def head(self, key: str, length: int) -> bytes:
        response = self.call(
            "get_object", Bucket=self.bucket, Key=self._key(key), Range=f"bytes=0-{length - 1}"
        )
        return response["Body"].read()

    def list_objects(self, prefix: str = "") -> dict[str, int]:
        full = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        found = {}
        token = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.call("list_objects_v2", **kwargs)
            for item in page.get("Contents", []):
                key = item["Key"]
                found[key[len(self.prefix) + 1 :] if self.prefix else key] = item["Size"]
            if not page.get("IsTruncated"):
                return found
            token = page["NextContinuationToken"]

    def discard(self, prefix: str) -> None:
        """Remove everything under `prefix` (a failed run's): objects and unfinished uploads."""
        if not prefix.strip("/"):
            raise UsageError("refusing to discard the whole backup store")
        self.delete(list(self.list_objects(prefix)))
        markers: dict[str, str] = {}
        while True:
            page = self.call(
                "list_multipart_uploads", Bucket=self.bucket, Prefix=self._key(prefix), **markers
            )
            for upload in page.get("Uploads", []):
                self.call(
                    "abort_multipart_upload",
                    Bucket=self.bucket,
                    Key=upload["Key"],
                    UploadId=upload["UploadId"],
                )
            if not page.get("IsTruncated"):
                return
            markers = {
                "KeyMarker": page["NextKeyMarker"],
                "UploadIdMarker": page["NextUploadIdMarker"],
            }

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": self._key(key)} for key in keys[start : start + 1000]]
            response = self.call("delete_objects", Bucket=self.bucket, Delete={"Objects": batch})
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise StoreError(
                    f"could not delete {len(errors)} object(s) in {self.url}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}"
                )
