"""The bundle's `.env`: generated secrets, read and updated in place, always mode 0600.

The format is the one docker compose reads: `KEY=value` lines, `#` comments. Updates keep
every other line and comment as they were.
"""

import fcntl
import os
import secrets
from pathlib import Path

from redkeep.errors import ConfigError
from redkeep.fsutil import SECRET_MODE, atomic_write

PASSWORD_BITS = 256


def generate_password() -> str:
    """Return a new random password: 256 bits from the OS CSPRNG, as 64 hex characters.

    Hex is what `ACL GENPASS` returns: it needs no escaping in URLs, shells or YAML.
    """
    return secrets.token_hex(PASSWORD_BITS // 8)


def parse_env(text: str, source: str = ".env") -> dict[str, str]:
    """Parse `.env` text into a dict. Quotes around a value are removed."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ConfigError(f"{source}:{number}: not a KEY=value line; fix or remove it")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def read_env(path: Path) -> dict[str, str]:
    """Read a `.env` file; a missing file is an empty mapping."""
    if not path.exists():
        return {}
    return parse_env(_text(path), source=str(path))


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {error.start}); fix the file or restore it from "
            "your secret store"
        ) from None


def render_env(header: str, values: dict[str, str]) -> str:
    """Return `.env` text: the header comment, then one KEY=value per line."""
    body = "".join(f"{key}={value}\n" for key, value in values.items())
    return f"{header}\n{body}"


def update_env(path: Path, updates: dict[str, str]) -> None:
    """Set `updates` in the `.env` at `path`, keep every other line, write it atomically, 0600.

    Two commands updating different keys at once (two rotations) must not lose either change:
    the read-change-write holds an exclusive lock on the directory that holds `.env` (the file
    itself is replaced by a rename, so a lock on it would not hold; a lock file would be one
    more file in the bundle).
    """
    lock = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _update(path, updates)
    finally:
        os.close(lock)  # releases the lock


def _update(path: Path, updates: dict[str, str]) -> None:
    lines = _text(path).splitlines() if path.exists() else []
    pending = dict(updates)
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if "=" in line and not line.lstrip().startswith("#") and key in updates:
            # Every line of the key, not only the first: readers take the last one.
            if key in pending:
                out.append(f"{key}={pending.pop(key)}")
        else:
            out.append(line)
    out.extend(f"{key}={value}" for key, value in pending.items())
    atomic_write(path, "\n".join(out) + "\n", SECRET_MODE)
