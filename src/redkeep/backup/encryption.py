"""age encryption settings: recipients (public keys), identities (private keys), passphrases.

The backup host needs only recipients: `age1...` X25519 keys or `ssh-ed25519`/`ssh-rsa`
public keys. A passphrase works without any key: the data is encrypted to a fresh key made
for this backup, and that key is stored as `key.age`, encrypted with the passphrase (age's
scrypt recipient). pyrage cannot stream passphrase encryption, so the key, not the data, goes
through it. Everything stays decryptable with the standard `age` tool.
"""

from dataclasses import dataclass, field
from pathlib import Path

import pyrage

from redkeep.errors import UsageError

KEY_OBJECT = "key.age"


@dataclass
class Encryption:
    """How one backup is encrypted: `recipients` for the data, maybe a passphrase-wrapped key."""

    recipients: list = field(default_factory=list)
    public_keys: list[str] = field(default_factory=list)
    key_object: bytes | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.recipients)

    @property
    def mode(self) -> str:
        if not self.recipients:
            return "none"
        if self.key_object is not None:
            return "age-passphrase" if not self.public_keys else "age-recipients+passphrase"
        return "age-recipients"


def parse_recipient(text: str, where: str):
    """An age recipient from its text; raise UsageError naming `where` if it is not one."""
    text = text.strip()
    try:
        if text.startswith("age1"):
            return pyrage.x25519.Recipient.from_str(text)
        if text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            return pyrage.ssh.Recipient.from_str(text)
    except pyrage.RecipientError:
        pass
    raise UsageError(
        f"{where}: not an age recipient ({text[:12]}...); expected an age1... public key or "
        "an ssh-ed25519/ssh-rsa public key (`age-keygen -y KEYFILE` prints one)"
    )


def read_recipients(keys: list[str], files: list[Path]) -> list[str]:
    """Recipient strings from `--age-recipient` values and recipients files (# comments ok)."""
    found = [key.strip() for key in keys if key.strip()]
    for path in files:
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise UsageError(f"cannot read recipients file {path}: {error.strerror}") from None
        for number, line in enumerate(lines, start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                parse_recipient(line, f"{path}:{number}")
                found.append(line.strip())
    for key in found:
        parse_recipient(key, "--age-recipient")
    return found


def plan_encryption(public_keys: list[str], passphrase: str | None) -> Encryption:
    """The encryption of a new backup: to `public_keys`, and/or to a passphrase-wrapped key."""
    recipients = [parse_recipient(key, "recipient") for key in public_keys]
    key_object = None
    if passphrase:
        identity = pyrage.x25519.Identity.generate()
        recipients.append(identity.to_public())
        key_object = pyrage.passphrase.encrypt(str(identity).encode(), passphrase)
    return Encryption(recipients, list(public_keys), key_object)


def read_identities(files: list[Path]) -> list:
    """age identities from identity files (`age-keygen` output or an OpenSSH private key)."""
    identities = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UsageError(f"cannot read identity file {path}: {error.strerror}") from None
        identities += _parse_identities(data, path)
    return identities


def _parse_identities(data: bytes, path: Path) -> list:
    if b"OPENSSH PRIVATE KEY" in data:
        try:
            return [pyrage.ssh.Identity.from_buffer(data)]
        except pyrage.IdentityError:
            raise UsageError(
                f"{path}: cannot read this SSH key (encrypted keys are not supported)"
            ) from None
    keys = [line.strip() for line in data.decode(errors="replace").splitlines()]
    keys = [line for line in keys if line.startswith("AGE-SECRET-KEY-")]
    if not keys:
        raise UsageError(f"{path}: no AGE-SECRET-KEY- line; is this an age identity file?")
    try:
        return [pyrage.x25519.Identity.from_str(key) for key in keys]
    except pyrage.IdentityError:
        raise UsageError(f"{path}: damaged AGE-SECRET-KEY line") from None


def unwrap_key(key_object: bytes, passphrase: str):
    """The backup's own identity from `key.age`; raise UsageError for a wrong passphrase."""
    try:
        text = pyrage.passphrase.decrypt(key_object, passphrase).decode()
    except pyrage.DecryptError:
        raise UsageError("wrong passphrase: cannot open this backup's key.age") from None
    return pyrage.x25519.Identity.from_str(text.strip())


def read_passphrase(path: Path) -> str:
    """The passphrase on the first line of `path`."""
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"cannot read passphrase file {path}: {error.strerror}") from None
    passphrase = text.splitlines()[0] if text.strip() else ""
    if not passphrase:
        raise UsageError(f"passphrase file {path} is empty")
    return passphrase
