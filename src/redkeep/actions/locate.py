"""Find what a command works on: the bundle (warning about secret files others can read)
and the Redis server to talk to."""

import os
from pathlib import Path

from redkeep.app import Application
from redkeep.bundle import Bundle, find_bundle
from redkeep.fsutil import mode_of, too_open
from redkeep.redis.target import (
    ConnectionOptions,
    Target,
    is_one_of,
    parse_host_port,
    resolve_target,
)
from redkeep.render.env import PASSWORD_KEYS


def target_for(
    connection: ConnectionOptions,
    bundle: Bundle | None,
    role: str,
) -> Target:
    """The Redis to talk to as `role`: --url, else the bundle's own endpoint, else REDIS_URL.

    A bundle (--dir, or found in the current directory) is talked to as the bundle, whatever
    REDIS_URL says, as sentinel and cluster bundles always were: a sourced .env's REDIS_URL is
    the app's (too weak for users list or audit), and another bundle's, sourced in the same
    shell, names another server.
    """
    if bundle is None:
        return resolve_target(connection, os.environ)
    endpoints = own_endpoints(bundle)
    target = resolve_target(
        connection,
        os.environ,
        bundle.target(role, with_password=False),
        known_passwords=bundle.known_passwords(),
        prefer_fallback=True,
        own_endpoints=endpoints,
    )
    missing = target.password is None and target.username in PASSWORD_KEYS
    if missing and target.tls and is_one_of(target, endpoints):
        bundle.password(target.username)  # says which .env key is missing
    return target


def own_endpoints(bundle: Bundle) -> list[tuple[str, int]]:
    """(HOST, PORT) of everything the bundle serves with its TLS files: every node and
    Sentinel, and the proxy (a sentinel bundle's REDIS_URL), each also by every name its
    server certificate holds (`tls.server_names`: `redis` is the compose service, which the
    compose file's exporter and backups reach)."""
    nodes = bundle.deployment("admin", with_password=False).nodes
    endpoints = [(node.target.host, node.target.port) for node in nodes]
    if bundle.settings.proxy.enabled:
        endpoints.append(parse_host_port(bundle.settings.proxy.listen, "proxy.listen"))
    names = bundle.settings.tls.server_names
    return endpoints + [(name, port) for name in names for _, port in endpoints]


def load_bundle(app: Application, directory: Path | None, required: bool = True) -> Bundle | None:
    """The bundle at --dir (or here); warn about secret files others can read."""
    bundle = find_bundle(directory, required=required)
    if bundle is not None:
        for path in bundle.secret_files():
            if too_open(path):
                app.warn(f"{path} is readable by others (mode {mode_of(path):o}); chmod 600 it")
    return bundle
