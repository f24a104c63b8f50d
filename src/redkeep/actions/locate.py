"""Find what a command works on: the bundle (warning about secret files others can read)
and the Redis server to talk to."""

import os
from pathlib import Path

from redkeep.app import Application
from redkeep.bundle import Bundle, find_bundle
from redkeep.fsutil import mode_of, too_open
from redkeep.redis.target import ConnectionOptions, Target, parse_host_port, resolve_target
from redkeep.render.env import PASSWORD_KEYS


def target_for(
    connection: ConnectionOptions,
    bundle: Bundle | None,
    role: str,
    prefer_bundle: bool = False,
) -> Target:
    """The Redis to talk to as `role`: options, environment, then the bundle's own endpoint."""
    if bundle is None:
        return resolve_target(connection, os.environ)
    target = resolve_target(
        connection,
        os.environ,
        bundle.target(role, with_password=False),
        known_passwords=bundle.known_passwords(),
        prefer_fallback=prefer_bundle,
        own_endpoints=own_endpoints(bundle),
    )
    if target.password is None and target.username in PASSWORD_KEYS:
        bundle.password(target.username)  # says which .env key is missing
    return target


def own_endpoints(bundle: Bundle) -> list[tuple[str, int]]:
    """(HOST, PORT) of everything the bundle serves with its TLS files: every node and
    Sentinel, and the proxy (a sentinel bundle's REDIS_URL)."""
    nodes = bundle.deployment("admin", with_password=False).nodes
    endpoints = [(node.target.host, node.target.port) for node in nodes]
    if bundle.settings.proxy.enabled:
        endpoints.append(parse_host_port(bundle.settings.proxy.listen, "proxy.listen"))
    return endpoints


def load_bundle(app: Application, directory: Path | None, required: bool = True) -> Bundle | None:
    """The bundle at --dir (or here); warn about secret files others can read."""
    bundle = find_bundle(directory, required=required)
    if bundle is not None:
        for path in bundle.secret_files():
            if too_open(path):
                app.warn(f"{path} is readable by others (mode {mode_of(path):o}); chmod 600 it")
    return bundle
