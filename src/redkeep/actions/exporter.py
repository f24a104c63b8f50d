"""`redkeep exporter`: wire the scraper, the app checks, the posture probes and the HTTP server.

Without a bundle or an app checks file the exporter never imports pydantic (or cryptography,
YAML, redis-py): a scrape needs none of them, and they would double its resident memory.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from redkeep.actions.locate import load_bundle, target_for
from redkeep.app import Application
from redkeep.bundle import Bundle
from redkeep.config.defaults import StandaloneExporter
from redkeep.errors import ConfigError, RedkeepError, UsageError
from redkeep.exporter import posture
from redkeep.exporter.appchecks import AppCheckRunner
from redkeep.exporter.background import Background
from redkeep.exporter.deployment_metrics import DeploymentMetrics
from redkeep.exporter.discovery import NodeDiscovery
from redkeep.exporter.http import Endpoint, Limits, make_server
from redkeep.exporter.primary import connect_primary
from redkeep.exporter.scrape import Scraper
from redkeep.exporter.targets import allowed_targets, key_of
from redkeep.redis.deployment import Role
from redkeep.redis.discover import peer
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import ConnectionOptions, Target, parse_host_port
from redkeep.render.env import ALL_PASSWORD_KEYS

if TYPE_CHECKING:
    from redkeep.config.schema import CheckSettings, ExporterSettings


@dataclass(frozen=True)
class ExporterRequest:
    """The flags of `redkeep exporter`."""

    connection: ConnectionOptions = ConnectionOptions()
    directory: Path | None = None
    listen: str | None = None  # HOST:PORT
    app_checks_file: Path | None = None  # --checks
    app_checks_url: str | None = None  # --checks-url
    no_main_target: bool = False
    log_level: str = "info"


def run_exporter(app: Application, request: ExporterRequest) -> None:
    """Serve /metrics (and /scrape?target=) until Ctrl-C or SIGTERM.

    Inside a bundle it logs in as the `exporter` user and reads the exporter settings, app
    checks and /scrape targets from redkeep.yaml.
    """
    logging.basicConfig(level=request.log_level.upper(), format="redkeep exporter: %(message)s")
    connection = request.connection
    bundle = load_bundle(app, request.directory, required=False)
    settings = bundle.settings.exporter if bundle else StandaloneExporter()
    env = {**(bundle.secrets() if bundle else {}), **os.environ}
    base = bundle.root if bundle else None
    nodes, sentinel_count = _deployment_nodes(bundle, env)
    # A Sentinel or cluster bundle has no one main node: its nodes are /scrape targets.
    no_main = request.no_main_target or (bool(nodes) and not connection.url)
    target = None if no_main else target_for(connection, bundle, "exporter")
    checks_file = request.app_checks_file
    app_checks = load_app_checks(checks_file) if checks_file else settings.checks
    background = _background(
        settings, app_checks, request.app_checks_url, target, connection, bundle, nodes,
        sentinel_count,
    )  # fmt: skip
    backup_metrics = bundle.root / bundle.settings.backup.metrics_file if bundle else None

    def refresh() -> Target:  # after `users rotate exporter`, .env holds the new password
        return target_for(connection, bundle, "exporter")

    main = Scraper(target, background.families, backup_metrics, refresh) if target else None
    # A Sentinel or cluster bundle: /metrics serves what is the whole deployment's (checks,
    # backups), each node is a /scrape target.
    whole = nodes and main is None and not request.no_main_target
    deployment = DeploymentMetrics(background.families, backup_metrics) if whole else None
    allowed = {key_of(node): node for node in nodes} | allowed_targets(settings, env, base)
    seeds = ([target] if target else []) + nodes
    endpoint = Endpoint(
        main=main,
        allowed=allowed,
        make_scraper=Scraper,
        basic_auth=_basic_auth(settings, env),
        tls=bool(settings.tls_cert_file),
        discovery=NodeDiscovery(seeds, allowed) if seeds else None,
        deployment=deployment,
    )
    listen = request.listen or settings.listen
    host, port = parse_host_port(listen, "--listen", "127.0.0.1:9121")
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
    app.say(f"redkeep exporter on {scheme}://{listen}/metrics")
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


def _deployment_nodes(bundle: Bundle | None, env: dict[str, str]) -> tuple[list[Target], int]:
    """A Sentinel or cluster bundle's planned nodes as the exporter reaches them, Sentinels
    first (their view of the deployment follows failovers), and how many are Sentinels.
    Nothing for a standalone bundle, and when `exporter.targets` lists the nodes
    itself unless the plan names them too (the compose view: `deployment.nodes_by_name`;
    Kubernetes: `deployment.node_addresses`, the pods' own names)."""
    settings = bundle.settings if bundle is not None else None
    if settings is None or settings.deployment.topology == "standalone":
        return [], 0
    by_name = settings.deployment.nodes_by_name or settings.deployment.node_addresses
    if settings.exporter.targets and not by_name:
        return [], 0
    password = env.get(ALL_PASSWORD_KEYS["exporter"])  # a missing one fails at login, said
    nodes = bundle.deployment("exporter", with_password=False).nodes
    ordered = sorted(nodes, key=lambda node: node.role is not Role.SENTINEL)
    sentinels = sum(1 for node in nodes if node.role is Role.SENTINEL)
    return [replace(node.target, password=password) for node in ordered], sentinels


def load_app_checks(path: Path) -> list[CheckSettings]:
    """App checks from a YAML file: a list, or a mapping with a `checks` list."""
    import yaml  # noqa: PLC0415 - only an app checks file needs YAML and pydantic
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
    app_checks: list[CheckSettings],
    app_checks_url: str | None,
    target: Target | None,
    connection: ConnectionOptions,
    bundle: Bundle | None,
    nodes: list[Target],
    sentinel_count: int,
) -> Background:
    """The background thread: app checks on their own connection, posture probes of `target`.

    A Sentinel or cluster bundle has no main target: a cluster's checks start at its data
    nodes, the first that answers (each key then goes to its slot's primary); a Sentinel
    deployment's run on the primary its Sentinels name now, never a replica."""
    sentinels, data_nodes = nodes[:sentinel_count], nodes[sentinel_count:]
    runner = None
    app_checks_options = None
    if app_checks_url or settings.checks_url:
        app_checks_options = ConnectionOptions(
            url=app_checks_url or settings.checks_url,
            password_file=connection.password_file,
            tls_ca=connection.tls_ca,
            tls_cert=connection.tls_cert,
            tls_key=connection.tls_key,
        )

    def app_checks_target() -> Target | None:
        """Resolved at each (re)connect, so a rotated password in .env is picked up."""
        if app_checks_options is None:
            return target_for(connection, bundle, "exporter") if target is not None else None
        # The bundle's password and TLS files only if the URL is one of its own endpoints.
        return target_for(app_checks_options, bundle, "exporter")

    def login(where: Target) -> RawConnection:
        raw = RawConnection(where, where.timeout)
        try:
            raw.login()
        except BaseException:
            raw.close()
            raise
        return raw

    # A Sentinel deployment's checks run on its primary whatever node --url names (the main
    # target may be a replica by now); --checks-url / exporter.checks_url pins them.
    follow_sentinels = bool(sentinels) and app_checks_options is None
    if app_checks and (app_checks_target() is not None or data_nodes):

        def connect(address: tuple[str, int] | None) -> RawConnection:
            """The configured node (address None), else that address as the same user."""
            if follow_sentinels and address is None:
                assert bundle is not None  # Sentinels come from a bundle's plan
                return connect_primary(sentinels, bundle.settings.deployment.master_name, login)
            configured = app_checks_target()
            seeds = [configured] if configured is not None else data_nodes
            if address is not None:
                return login(peer(seeds[0], *address))  # announced by IP: the seed's name
            for seed in seeds[:-1]:
                try:
                    return login(seed)
                except RedkeepError:
                    continue  # a data node down (failed over): the next one
            return login(seeds[-1])

        runner = AppCheckRunner(
            app_checks,
            connect,
            settings.checks_budget_seconds,
            settings.checks_scan_count,
            settings.checks_max_commands,
            primary_only=follow_sentinels,
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
