"""Options shared by many commands: connection, bundle directory, JSON output."""

import functools
from collections.abc import Callable
from pathlib import Path

import click

# Finding the bundle and the target is the actions' work; commands still import them here.
from redkeep.actions.locate import load_bundle, target_for  # noqa: F401
from redkeep.redis.target import ConnectionOptions

PathType = click.Path(path_type=Path)


def connection_options(command: Callable) -> Callable:
    """Add --url, --password-file, --tls-ca/--tls-cert/--tls-key, --timeout as `connection`."""

    @click.option(
        "--url",
        metavar="URL",
        help="redis://, rediss:// or unix:// URL (default: the bundle's, else REDIS_URL). "
        "Put no password here on shared machines: use --password-file or REDIS_PASSWORD.",
    )
    @click.option("--password-file", type=PathType, help="File whose first line is the password.")
    @click.option("--tls-ca", type=PathType, help="CA certificate to verify the server.")
    @click.option("--tls-cert", type=PathType, help="Client certificate (mutual TLS).")
    @click.option("--tls-key", type=PathType, help="Client private key (mutual TLS).")
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=5.0,
        show_default=True,
        help="Seconds to wait for connect and replies.",
    )
    @functools.wraps(command)
    def wrapper(*args, url, password_file, tls_ca, tls_cert, tls_key, timeout, **kwargs):
        kwargs["connection"] = ConnectionOptions(
            url=url,
            password_file=password_file,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            timeout=timeout,
        )
        return command(*args, **kwargs)

    return wrapper


def dir_option(command: Callable) -> Callable:
    return click.option(
        "--dir",
        "directory",
        type=click.Path(path_type=Path, file_okay=False),
        help="The bundle directory (default: the current one, if it holds redkeep.yaml).",
    )(command)


def json_option(command: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        command
    )
