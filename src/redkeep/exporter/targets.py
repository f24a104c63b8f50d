"""The allow-list of `/scrape?target=`, each target with its own named credential profile.

A target is accepted only if it is listed; its password comes from its profile (an environment
variable), never from the request and never from another target. This closes redis_exporter's
SSRF hole, where `/scrape` reached any address with the main password.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from redkeep.bundle import resolve_path
from redkeep.errors import UsageError
from redkeep.redis.target import Target, parse_url

if TYPE_CHECKING:
    from redkeep.config.schema import ExporterSettings


def key_of(target: Target) -> str:
    """The identity of a target for the allow-list: scheme, address, database."""
    if target.scheme == "unix":
        return f"unix://{target.socket_path}?db={target.db}"
    host = target.host.lower()
    if host == "localhost":
        host = "127.0.0.1"
    return f"{target.scheme}://{host}:{target.port}/{target.db}"


def allowed_targets(
    settings: ExporterSettings, env: Mapping[str, str], base: Path | None = None
) -> dict[str, Target]:
    """{key: Target with the profile's credentials} for every listed target."""
    allowed = {}
    for entry in settings.targets:
        target = parse_url(entry.url)
        if target.password is not None:
            raise UsageError(
                f"exporter.targets: {entry.url.split('@')[-1]} carries a password; put it in "
                "a profile's password_env instead"
            )
        profile = settings.profiles[entry.profile]
        password = env.get(profile.password_env) if profile.password_env else None
        if profile.password_env and not password:
            raise UsageError(
                f"exporter profile '{entry.profile}': {profile.password_env} is not set"
            )
        allowed[key_of(target)] = replace(
            target,
            username=profile.username or target.username,
            password=password,
            password_source=profile.password_env or "",
            tls_ca=resolve_path(profile.tls_ca, base),
            tls_cert=resolve_path(profile.tls_cert, base),
            tls_key=resolve_path(profile.tls_key, base),
        )
    return allowed


def lookup(allowed: Mapping[str, Target], requested: str) -> Target | None:
    """The allowed Target for a `target=` value, or None. Credentials in it are refused."""
    try:
        target = parse_url(requested if "://" in requested else f"redis://{requested}")
    except UsageError:
        return None
    if target.password is not None or target.username is not None:
        return None
    return allowed.get(key_of(target))
