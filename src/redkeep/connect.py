"""Target -> a connected redis-py client, and one-line explanations of why that failed.

`endpoint.py` decides where to connect and with which credentials; this module builds the
client (where the TLS context of every redis-py connection is made) and explains failures:
connection refused, TLS handshake (unknown CA, client certificate required, protocol),
WRONGPASS, NOAUTH, NOPERM.
"""

import contextlib
import ssl
from collections.abc import Iterator

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from redkeep.endpoint import Target, explain_os_error, first_line
from redkeep.errors import ConnectError, RedisCommandError, UsageError


def client_for(target: Target, decode_responses: bool = True) -> redis.Redis:
    """Build a redis-py client for `target` (no network I/O yet)."""
    common = {
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "socket_timeout": target.timeout,
        "socket_connect_timeout": target.timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": decode_responses,
    }
    if target.scheme == "unix":
        return redis.Redis(unix_socket_path=target.socket_path, **common)
    tls = {}
    if target.tls:
        check_tls_files(target)
        tls = {
            "ssl": True,
            "ssl_ca_certs": str(target.tls_ca) if target.tls_ca else None,
            "ssl_certfile": str(target.tls_cert) if target.tls_cert else None,
            "ssl_keyfile": str(target.tls_key) if target.tls_key else None,
            "ssl_check_hostname": True,
            "ssl_cert_reqs": "required",
            "ssl_min_version": ssl.TLSVersion.TLSv1_2,
        }
    return redis.Redis(host=target.host, port=target.port, **tls, **common)


def check_tls_files(target: Target) -> None:
    """Load the CA and the client pair once, so a bad file is named, not a failed handshake."""
    if bool(target.tls_cert) != bool(target.tls_key):
        raise UsageError("a TLS client certificate needs its key: pass both or neither")
    files = (
        ("CA file", target.tls_ca),
        ("client certificate", target.tls_cert),
        ("client key", target.tls_key),
    )
    for what, path in files:
        if path is not None and not path.is_file():
            raise UsageError(f"TLS {what} {path}: not a readable file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if target.tls_ca is not None:
        try:
            context.load_verify_locations(cafile=str(target.tls_ca))
        except ssl.SSLError:
            raise UsageError(f"TLS CA file {target.tls_ca}: not a PEM certificate") from None
    if target.tls_cert is not None and target.tls_key is not None:
        try:
            context.load_cert_chain(str(target.tls_cert), str(target.tls_key))
        except ssl.SSLError as error:
            mismatch = "mismatch" in str(error).lower()
            detail = (
                "the key does not belong to it" if mismatch else "not PEM, or the key is encrypted"
            )
            raise UsageError(
                f"TLS client certificate {target.tls_cert} (key {target.tls_key}): {detail}"
            ) from None


def connect(target: Target) -> redis.Redis:
    """Return a client that has answered PING; raise ConnectError saying why it could not."""
    client = client_for(target)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        client.close()
        raise explain_failure(error, target) from None
    return client


@contextlib.contextmanager
def session(target: Target) -> Iterator[redis.Redis]:
    """A connected client for the duration of a `with` block; closed afterwards."""
    client = connect(target)
    try:
        yield client
    finally:
        client.close()


def explain_failure(error: BaseException, target: Target) -> ConnectError | RedisCommandError:
    """Turn an exception from connecting or authenticating into a one-line error."""
    if isinstance(error, redis.AuthenticationError):
        return ConnectError(_auth_message(str(error), target))
    if isinstance(error, NoPermissionError):
        return RedisCommandError(_noperm_message(str(error), target))
    return explain_os_error(error, target)


def _auth_message(text: str, target: Target) -> str:
    source = f" (password from {target.password_source})" if target.password_source else ""
    user = target.username or "default"
    # redis-py may open with HELLO, which Redis refuses with its own NOAUTH wording.
    if "Authentication required" in text or "already authenticated" in text:
        return (
            f"{target.where} requires authentication (NOAUTH): give a user and password in the "
            "URL, --password-file or REDIS_PASSWORD"
        )
    if target.password is None:
        return f"{target.where} refused user '{user}' (WRONGPASS): no password was given"
    return (
        f"{target.where} refused user '{user}' (WRONGPASS): wrong password or the user is "
        f"disabled{source}"
    )


def _noperm_message(text: str, target: Target) -> str:
    user = target.username or "default"
    return f"user '{user}' may not do that on {target.where} (NOPERM): {first_line(text)}"


def explain_command_error(error: redis.RedisError, target: Target, command: str) -> Exception:
    """Turn an error reply to `command` into a one-line error that names user and endpoint."""
    if isinstance(error, NoPermissionError):
        user = target.username or "default"
        origin = f" (URL from {target.url_source})" if target.url_source else ""
        return RedisCommandError(
            f"user '{user}' may not run {command} on {target.where} (NOPERM){origin}; "
            "connect as a user that may, e.g. the bundle's admin"
        )
    if isinstance(error, redis.ConnectionError | redis.TimeoutError | redis.AuthenticationError):
        return explain_failure(error, target)
    return RedisCommandError(f"{command} failed on {target.where}: {first_line(str(error))}")
