"""The `backup:` section of redkeep.yaml: its fields are declared in `config/defaults.py`."""

import pyrage
from pydantic import field_validator

from redkeep.config import defaults
from redkeep.config.section import section

RetentionSettings = section(defaults.RetentionDefaults)
NotifySettings = section(defaults.NotifyDefaults)
S3Settings = section(defaults.S3Defaults)


class BackupSettings(
    section(
        defaults.BackupDefaults,
        retention=RetentionSettings,
        notify=NotifySettings,
        s3=S3Settings,
    )
):
    @field_validator("age_recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        # Parsed as encryption parses them: a key it cannot read would fail every backup.
        for key in value:
            try:
                if key.startswith("age1"):
                    pyrage.x25519.Recipient.from_str(key)
                    continue
                if key.startswith(("ssh-ed25519 ", "ssh-rsa ")):
                    pyrage.ssh.Recipient.from_str(key)
                    continue
            except pyrage.RecipientError:
                pass
            raise ValueError(
                f"'{key[:16]}...' is not an age public key (age1..., as `age-keygen -y KEYFILE` "
                "prints it) nor an ssh-ed25519/ssh-rsa public key"
            )
        return value
