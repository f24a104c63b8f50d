"""The `exporter:` section of redkeep.yaml: its own fields are declared in
`config/defaults.py`; the application checks, /scrape targets and profiles are models here."""

from typing import Literal

from pydantic import Field, model_validator

from redkeep.config import defaults
from redkeep.config.section import HostPort, Section, section

CHECK_TYPES = (
    "key_age",
    "hash_counters",
    "key_count",
    "ttl",
    "exists",
    "stream_length",
    "list_length",
    "lua",
)
# What each check type needs besides its name.
CHECK_NEEDS = {
    "key_age": ("key",),
    "hash_counters": ("key", "fields"),
    "key_count": ("pattern",),
    "ttl": ("key",),
    "exists": ("key",),
    "stream_length": ("key",),
    "list_length": ("key",),
    "lua": ("script",),
}


class CheckSettings(Section):
    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$", description="Name of the check (the `check` label)."
    )
    type: Literal[CHECK_TYPES] = Field(description="What to measure.")  # type: ignore[valid-type]
    key: str | None = Field(None, description="The key to look at.")
    field: str | None = Field(
        None, description="key_age: the hash field holding the timestamp (else the key's value)."
    )
    unit: Literal["s", "ms", "us"] = Field("s", description="key_age: unit of the timestamp.")
    fields: list[str] = Field(default_factory=list, description="hash_counters: the fields.")
    pattern: str | None = Field(None, description="key_count: a SCAN MATCH pattern.")
    db: int = Field(0, ge=0, description="Database number.")
    script: str | None = Field(None, description="lua: a read-only script (run with EVAL_RO).")
    keys: list[str] = Field(default_factory=list, description="lua: the script's KEYS.")
    interval_seconds: float = Field(15.0, gt=0, description="Seconds between evaluations.")

    @model_validator(mode="after")
    def _has_what_its_type_needs(self) -> "CheckSettings":
        missing = [need for need in CHECK_NEEDS[self.type] if not getattr(self, need)]
        if missing:
            raise ValueError(f"a {self.type} check needs {', '.join(missing)}")
        return self


class ScrapeTargetSettings(Section):
    url: str = Field(description="A Redis URL `/scrape?target=` may name (no password here).")
    profile: str = Field(description="The credential profile used for it.")


class ProfileSettings(Section):
    username: str | None = Field(None, description="ACL user.")
    password_env: str | None = Field(
        None, description="Environment variable (or .env key) holding the password."
    )
    tls_ca: str | None = Field(None, description="CA certificate for rediss:// targets.")
    tls_cert: str | None = Field(None, description="Client certificate.")
    tls_key: str | None = Field(None, description="Client key.")


class ExporterSettings(
    section(
        defaults.ExporterDefaults,
        listen=HostPort,
        checks=list[CheckSettings],
        targets=list[ScrapeTargetSettings],
        profiles=dict[str, ProfileSettings],
    )
):
    @model_validator(mode="after")
    def _profiles_exist(self) -> "ExporterSettings":
        for target in self.targets:
            if target.profile not in self.profiles:
                raise ValueError(
                    f"target {target.url} names profile '{target.profile}', which is not defined"
                )
        names = [check.name for check in self.checks]
        if len(names) != len(set(names)):
            raise ValueError("check names must be unique")
        return self
