"""Target -> a connected redis-py client, and its exceptions explained.

The TLS context is the one `tls.context_for` builds (a small connection class hands it to
redis-py), and failures go through `explain.explain` like the raw connection's: redis-py's
exception classes are mapped back to the reply codes and socket errors they stand for.
"""

import contextlib
import errno
import ssl
from collections.abc import Iterator

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from redkeep.errors import RedkeepError
from redkeep.redis.explain import ErrorReply, explain
from redkeep.redis.target import Target
from redkeep.redis.tls import context_for


class TLSConnection(redis.Connection):
    """redis-py's TCP connection, wrapped in our TLS context instead of one from ssl_* args."""

    def __init__(self, ssl_context: ssl.SSLContext, server_name: str, **kwargs) -> None:
        self.ssl_context = ssl_context
        self.server_name = server_name
        super().__init__(**kwargs)

    def _connect(self):
        sock = super()._connect()
        try:
            return self.ssl_context.wrap_socket(sock, server_hostname=self.server_name)
        except OSError:
            sock.close()
            raise


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
    if not target.tls:
        return redis.Redis(host=target.host, port=target.port, **common)
    pool = redis.ConnectionPool(
        connection_class=TLSConnection,
        ssl_context=context_for(target),
        server_name=target.server_name,
        host=target.host,
        port=target.port,
        **common,
    )
    return redis.Redis.from_pool(pool)  # closing the client closes the pool


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


def explain_failure(error: BaseException, target: Target, command: str = "") -> RedkeepError:
    """`explain.explain` for redis-py's exceptions: one line that names user and endpoint.

    `command` names what was sent ("CONFIG SET"); without it the failure is taken as part of
    connecting.
    """
    return explain(_as_explained(error), target, command)


def _as_explained(error: BaseException) -> BaseException:
    """redis-py's exception as what `explain` reads: a reply with its code, or a socket error.

    redis-py drops a reply's code and has no exception types for a closed connection, so its
    own wording is read here, at the edge of the library, and nowhere else.
    """
    text = str(error)
    if isinstance(error, redis.AuthenticationError):
        # redis-py may open with HELLO, which Redis refuses with its own NOAUTH wording.
        noauth = "Authentication required" in text or "already authenticated" in text
        return ErrorReply("NOAUTH" if noauth else "WRONGPASS", text)
    if isinstance(error, NoPermissionError):
        return ErrorReply("NOPERM", text)
    if isinstance(error, redis.TimeoutError):
        return _caused(TimeoutError(text), error)
    if isinstance(error, redis.ConnectionError):
        if "closed by server" in text or "reset by peer" in text:
            return _caused(ConnectionResetError(errno.ECONNRESET, text), error)
        return error
    if isinstance(error, redis.RedisError):
        code = text.split(" ", 1)[0]  # redis-py keeps codes it has no exception type for
        return ErrorReply(code if code == "MISCONF" else "ERR", text)
    return error


def _caused(translated: BaseException, original: BaseException) -> BaseException:
    translated.__cause__ = original
    return translated
