"""`redkeep exporter`: the Prometheus exporter."""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from redkeep.app import Application
from redkeep.bundle import Bundle
from redkeep.cli.options import connection_options, dir_option, load_bundle, target_for
from redkeep.config.defaults import StandaloneExporter
from redkeep.errors import ConfigError, UsageError
from redkeep.exporter import posture
from redkeep.exporter.background import Background
from redkeep.exporter.checks import CheckRunner
from redkeep.exporter.http import Endpoint, Limits, make_server
from redkeep.exporter.scrape import Scraper
from redkeep.exporter.targets import allowed_targets
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import ConnectionOptions, Target, parse_host_port, resolve_target

if TYPE_CHECKING:
    from redkeep.config.schema import CheckSettings, ExporterSettings

# Without a bundle or a checks file the exporter never imports pydantic (or cryptography):
# a scrape needs neither, and they would double its resident memory.


@click.command()
@connection_options
@dir_option
@click.option("--listen", metavar="HOST:PORT", help="Where to listen (default 127.0.0.1:9121).")
@click.option(
    "--checks",
    "checks_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML file with application checks (a list, or {checks: [...]}).",
)
@click.option("--checks-url", help="Run the checks against this server (e.g. a replica).")
@click.option("--no-main-target", is_flag=True, help="Serve only /scrape?target= (no /metrics).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info")
@click.pass_obj
def exporter(
    app: Application,
    connection: ConnectionOptions,
    directory: Path | None,
    listen: str | None,
    checks_file: Path | None,
    checks_url: str | None,
    no_main_target: bool,
    log_level: str,
) -> None:
    """Serve Prometheus metrics of Redis, compatible with redis_exporter's names.

    Inside a bundle it logs in as the `exporter` user and reads exporter settings, checks and
    /scrape targets from redkeep.yaml; the endpoint binds to localhost unless told otherwise.
    """
    logging.basicConfig(level=log_level.upper(), format="redkeep exporter: %(message)s")
    bundle = load_bundle(app, directory, required=False)
    settings = bundle.settings.exporter if bundle else StandaloneExporter()
    env = {**(bundle.secrets() if bundle else {}), **os.environ}
    base = bundle.root if bundle else None
    target = None if no_main_target else target_for(connection, bundle, "exporter")
    checks = load_checks(checks_file) if checks_file else settings.checks
    background = _background(settings, checks, checks_url, target, connection, bundle)
    backup_metrics = bundle.root / bundle.settings.backup.metrics_file if bundle else None

    def refresh() -> Target:  # after `users rotate exporter`, .env holds the new password
        return target_for(connection, bundle, "exporter")

    main = Scraper(target, background.families, backup_metrics, refresh) if target else None
    endpoint = Endpoint(
        main=main,
        allowed=allowed_targets(settings, env, base),
        make_scraper=Scraper,
        basic_auth=_basic_auth(settings, env),
        tls=bool(settings.tls_cert_file),
    )
    host, port = parse_host_port(listen or settings.listen, "--listen", "127.0.0.1:9121")
    tls_files = _tls_files(settings, base)
    limits = Limits(
        header_timeout=settings.http_header_timeout_seconds,
        idle_timeout=settings.http_idle_timeout_seconds,
        write_timeout=settings.http_write_timeout_seconds,
        max_connections=settings.http_max_connections,
        max_connections_per_address=settings.http_max_connections_per_address,
    )
    server = make_server(endpoint, host, port, tls_files, limits)
    scheme = "https" if tls_files else "http"
    app.say(f"redkeep exporter on {scheme}://{listen or settings.listen}/metrics")
    background.start()
    # What start-up loaded (libraries, settings) lives as long as the process: moved out of
    # the collector's view, the collections a scrape's garbage triggers stay short.
    gc.freeze()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        background.stop()
        if main is not None:
            main.close()


def load_checks(path: Path) -> list[CheckSettings]:
    """Checks from a YAML file: a list, or a mapping with a `checks` list."""
    import yaml  # noqa: PLC0415 - only a checks file needs YAML and pydantic
    from pydantic import TypeAdapter, ValidationError  # noqa: PLC0415

    from redkeep.config.load import format_problem  # noqa: PLC0415
    from redkeep.config.schema import CheckSettings  # noqa: PLC0415

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: YAML syntax error: {error}") from None
    items = data.get("checks", []) if isinstance(data, dict) else data
    try:
        return TypeAdapter(list[CheckSettings]).validate_python(items or [])
    except ValidationError as error:
        problems = [
            format_problem({**item, "loc": ("checks", *item["loc"])}, {}) for item in error.errors()
        ]
        raise ConfigError(f"{path}: {len(problems)} invalid check setting(s)", problems) from None


def _background(
    settings: ExporterSettings | StandaloneExporter,
    checks: list[CheckSettings],
    checks_url: str | None,
    target: Target | None,
    connection: ConnectionOptions,
    bundle: Bundle | None,
) -> Background:
    runner = None
    checks_options = None
    if checks_url or settings.checks_url:
        checks_options = ConnectionOptions(
            url=checks_url or settings.checks_url,
            password_file=connection.password_file,
            tls_ca=connection.tls_ca,
            tls_cert=connection.tls_cert,
            tls_key=connection.tls_key,
        )

    def checks_target() -> Target | None:
        """Resolved at each (re)connect, so a rotated password in .env is picked up."""
        if checks_options is None:
            return target_for(connection, bundle, "exporter") if target is not None else None
        known = bundle.known_passwords() if bundle else None
        return resolve_target(checks_options, os.environ, target, known_passwords=known)

    if checks and checks_target() is not None:

        def connect() -> RawConnection:
            where = checks_target()
            raw = RawConnection(where, where.timeout)
            try:
                raw.login()
            except BaseException:
                raw.close()
                raise
            return raw

        runner = CheckRunner(
            checks,
            connect,
            settings.checks_budget_seconds,
            settings.checks_scan_count,
            settings.checks_max_commands,
        )
    probe = (lambda: posture.probe_posture(target)) if target is not None else None
    return Background(runner, probe, settings.posture_interval_seconds)


def _basic_auth(
    settings: ExporterSettings | StandaloneExporter, env: dict[str, str]
) -> tuple[str, str] | None:
    if not settings.basic_auth_user:
        return None
    password = env.get("EXPORTER_BASIC_AUTH_PASSWORD")
    if not password:
        raise UsageError(
            "exporter.basic_auth_user is set but EXPORTER_BASIC_AUTH_PASSWORD is not "
            "(environment or .env)"
        )
    return settings.basic_auth_user, password


def _tls_files(
    settings: ExporterSettings | StandaloneExporter, base: Path | None
) -> tuple[Path, Path] | None:
    if not settings.tls_cert_file:
        return None
    if not settings.tls_key_file:
        raise UsageError("exporter.tls_cert_file needs exporter.tls_key_file")
    paths = [Path(settings.tls_cert_file), Path(settings.tls_key_file)]
    paths = [base / path if base and not path.is_absolute() else path for path in paths]
    return paths[0], paths[1]
