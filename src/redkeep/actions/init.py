"""`redkeep init DIR`: render a complete bundle; never replace an existing secret."""

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from redkeep.bundle import CONFIG_NAME, Bundle
from redkeep.config.load import load_settings
from redkeep.config.schema import Settings
from redkeep.envfile import generate_password, parse_env, read_env, update_env
from redkeep.errors import UsageError
from redkeep.fsutil import atomic_write, ensure_private_dir
from redkeep.pki import issue
from redkeep.pki.files import DEFAULT_CLIENT, TLSFiles, write_pair
from redkeep.pki.inspect import load_certificate, load_private_key, subject_alt_names
from redkeep.render.bundle import bundle_files
from redkeep.render.env import PASSWORD_KEYS
from redkeep.render.redis_conf import local_paths, render_redis_conf
from redkeep.stack import redis_server


@dataclass
class InitReport:
    root: Path
    written: list[str] = field(default_factory=list)
    kept_secrets: list[str] = field(default_factory=list)
    new_secrets: list[str] = field(default_factory=list)
    certificates: list[str] = field(default_factory=list)
    checked_with: str = ""


def init_bundle(
    root: Path, force: bool = False, tls_port: int | None = None, now: dt.datetime | None = None
) -> InitReport:
    """Write a bundle into `root`, or re-render an existing one with `force`.

    Secrets already in `.env` and an existing CA are kept; only missing ones are created.
    Raise UsageError if `root` already holds bundle files and `force` is not set.
    """
    now = now or dt.datetime.now(dt.UTC)
    bundle = Bundle(root)
    _refuse_overwrite(bundle, force)
    settings, settings_changed = _settings(bundle, tls_port)
    report = InitReport(root=root)
    ensure_private_dir(root)
    passwords = _passwords(bundle, report)
    report.certificates = ensure_certificates(bundle.tls, settings, now)
    for directory in (bundle.data_dir, bundle.run_dir):
        ensure_private_dir(directory)
    bundle.redis_dir.mkdir(exist_ok=True)
    files = bundle_files(settings, passwords, os.getuid(), os.getgid())
    marker = files.pop()  # redkeep.yaml: written only once everything else is in place
    for item in files:
        if item.path == ".env" and bundle.env_path.exists():
            update_env(bundle.env_path, parse_env(item.content))
        else:
            atomic_write(root / item.path, item.content, item.mode)
        report.written.append(item.path)
    report.checked_with = check_local_config(bundle, settings)
    if settings_changed:
        atomic_write(root / marker.path, marker.content, marker.mode)
        report.written.append(marker.path)
    return report


def _refuse_overwrite(bundle: Bundle, force: bool) -> None:
    if force:
        return
    existing = [
        name
        for name in (CONFIG_NAME, ".env", "redis/redis.conf", "redis/users.acl", "tls/ca.crt")
        if (bundle.root / name).exists()
    ]
    if existing:
        raise UsageError(
            f"{bundle.root} already holds a bundle ({', '.join(existing)}); pass --force to "
            "re-render it (existing secrets and certificates are kept)"
        )


def _settings(bundle: Bundle, tls_port: int | None) -> tuple[Settings, bool]:
    """The effective settings (file, environment, flags) and whether redkeep.yaml must change."""
    path = bundle.config_path if bundle.exists() else None
    on_file = load_settings(path, environ={})
    settings = load_settings(path)
    if tls_port is not None:
        data = settings.model_dump()
        data["redis"]["tls_port"] = tls_port
        settings = Settings.model_validate(data)
    return settings, path is None or settings != on_file


def _passwords(bundle: Bundle, report: InitReport) -> dict[str, str]:
    existing = read_env(bundle.env_path)
    passwords = {}
    for role, key in PASSWORD_KEYS.items():
        if existing.get(key):
            passwords[role] = existing[key]
            report.kept_secrets.append(key)
        else:
            passwords[role] = generate_password()
            report.new_secrets.append(key)
    return passwords


def ensure_certificates(files: TLSFiles, settings: Settings, now: dt.datetime) -> list[str]:
    """Create what is missing of CA, server and client certificates; keep what exists.

    The server certificate is re-issued when its names differ from tls.server_names.
    Return one line per action taken.
    """
    ensure_private_dir(files.directory)
    tls = settings.tls
    actions = []
    if files.ca_cert.exists() and files.ca_key.exists():
        ca_cert, ca_key = load_certificate(files.ca_cert), load_private_key(files.ca_key)
        actions.append("kept CA tls/ca.crt")
    else:
        ca_cert, ca_key = issue.make_ca(f"{settings.name} Redis CA", tls.key_type, tls.ca_days, now)
        write_pair(files.ca_cert, files.ca_key, ca_cert, ca_key)
        actions.append("created CA tls/ca.crt")
    if not _server_cert_current(files, tls.server_names):
        cert, key = issue.make_server_cert(
            ca_cert, ca_key, tls.server_names, tls.key_type, tls.cert_days, now
        )
        write_pair(files.server_cert, files.server_key, cert, key)
        actions.append(f"issued server certificate for {', '.join(tls.server_names)}")
    if not (files.client_cert().exists() and files.client_key().exists()):
        cert, key = issue.make_client_cert(
            ca_cert, ca_key, f"{settings.name}-{DEFAULT_CLIENT}", tls.key_type, tls.cert_days, now
        )
        write_pair(files.client_cert(), files.client_key(), cert, key)
        actions.append("issued client certificate tls/client.crt")
    return actions


def _server_cert_current(files: TLSFiles, names: list[str]) -> bool:
    if not (files.server_cert.exists() and files.server_key.exists()):
        return False
    return sorted(subject_alt_names(load_certificate(files.server_cert))) == sorted(names)


def check_local_config(bundle: Bundle, settings: Settings) -> str:
    """Have the local redis-server parse this bundle's configuration; return its version.

    Skipped (returns "") when redis-server is not installed: the bundle targets Docker too.
    """
    try:
        binary = redis_server.find_redis_server()
    except UsageError:
        return ""
    version = redis_server.server_version(binary)
    conf = render_redis_conf(
        settings, local_paths(bundle.root), version[:2], settings.redis.bind, target="check"
    )
    with tempfile.TemporaryDirectory(prefix="redkeep-check-") as tmp:
        conf_path = Path(tmp) / "redis.conf"
        conf_path.write_text(conf)
        redis_server.check_config(binary, conf_path)
    return ".".join(map(str, version))
