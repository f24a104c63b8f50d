"""Why talking to Redis failed, in one line with a kind: the one place these messages are made.

Socket and TLS failures are read from the exception chain (ssl, refused, name lookup, timeout,
reset); error replies (WRONGPASS, NOAUTH, NOPERM, unknown command) from their code. The raw
connection hands its error replies over as `ErrorReply`; the redis-py client turns its
exceptions into the same terms first (`client.explain_failure`). A caller that knows what a
command was for adds its own advice through `hints` (the backup says which rights it needs).
"""

import errno
import socket
import ssl
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from redkeep.errors import ConnectError, ErrorKind, RedisCommandError, RedkeepError
from redkeep.redis.target import Target

# Appended to the message of a failure of that kind, punctuation included.
Hints = Mapping[ErrorKind, str]
NO_HINTS: Hints = MappingProxyType({})
ADMIN_HINT = "; connect as a user that may, e.g. the bundle's admin"


class ErrorReply(Exception):
    """An error reply from Redis: its code (WRONGPASS, NOPERM, ERR ...) and its text."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text

    @classmethod
    def parse(cls, line: str) -> "ErrorReply":
        """From the reply line without its '-': 'NOPERM this user has no permissions ...'."""
        return cls(line.split(maxsplit=1)[0] if line.strip() else "ERR", line)


def explain(
    error: BaseException, target: Target, command: str = "", hints: Hints = NO_HINTS
) -> RedkeepError:
    """A one-line error with its kind for a failure talking to `target`.

    `command` names what was sent, for error replies ("CONFIG SET"); without it a reply is
    taken as part of connecting.
    """
    if isinstance(error, ErrorReply):
        return _reply(error, target, command, hints)
    return _connection(error, target)


def _reply(reply: ErrorReply, target: Target, command: str, hints: Hints) -> RedkeepError:
    user = target.username or "default"
    where = target.where
    if reply.code in ("WRONGPASS", "NOAUTH"):
        return ConnectError(_auth_message(reply.code, target), kind=ErrorKind.AUTH)
    if reply.code == "NOPERM" and command:
        origin = f" (URL from {target.url_source})" if target.url_source else ""
        hint = hints.get(ErrorKind.PERMISSION, ADMIN_HINT)
        return RedisCommandError(
            f"user '{user}' may not run {command} on {where} (NOPERM){origin}{hint}",
            kind=ErrorKind.PERMISSION,
        )
    if reply.code == "NOPERM":
        return RedisCommandError(
            f"user '{user}' may not do that on {where} (NOPERM): {first_line(reply.text)}",
            kind=ErrorKind.PERMISSION,
        )
    if reply.code == "MISCONF":  # it answers, but refuses writes (and PING) until it can save
        return RedisCommandError(
            f"{where} cannot persist to disk (MISCONF): its last save failed, so it refuses "
            "commands; free disk space in its data directory (its log says why)",
            kind=ErrorKind.COMMAND,
        )
    # Redis gives "unknown command" no code of its own: ERR and these words.
    if command and "unknown command" in reply.text:
        hint = hints.get(ErrorKind.UNKNOWN_COMMAND, "")
        return RedisCommandError(
            f"{where} does not offer {command} (a managed service?){hint}",
            kind=ErrorKind.UNKNOWN_COMMAND,
        )
    if command:
        return RedisCommandError(
            f"{command} failed on {where}: {first_line(reply.text)}", kind=ErrorKind.COMMAND
        )
    return ConnectError(f"cannot connect to {where}: {first_line(reply.text)}")


def _auth_message(code: str, target: Target) -> str:
    where = target.where
    if code == "NOAUTH":
        return (
            f"{where} requires authentication (NOAUTH): give a user and password in the URL, "
            "--password-file or REDIS_PASSWORD"
        )
    user = target.username or "default"
    if target.password is None:
        return f"{where} refused user '{user}' (WRONGPASS): no password was given"
    source = f" (password from {target.password_source})" if target.password_source else ""
    return (
        f"{where} refused user '{user}' (WRONGPASS): wrong password or the user is disabled{source}"
    )


def _connection(error: BaseException, target: Target) -> ConnectError:
    """A socket or TLS failure, wherever it is in the exception chain."""
    where = target.where
    for cause in _chain(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ConnectError(_verify_message(cause, target), kind=ErrorKind.TLS)
        if isinstance(cause, ssl.SSLEOFError):
            return ConnectError(
                f"TLS handshake with {where} failed: {_tls_eof_reason(target)}", kind=ErrorKind.TLS
            )
        if isinstance(cause, ssl.SSLError):
            return ConnectError(
                f"TLS handshake with {where} failed: {_tls_reason(cause)}", kind=ErrorKind.TLS
            )
        if isinstance(cause, ConnectionRefusedError):
            return ConnectError(
                f"cannot connect to {where}: connection refused; is Redis running and "
                "listening on that port?",
                kind=ErrorKind.REFUSED,
            )
        if isinstance(cause, socket.gaierror):
            return ConnectError(
                f"cannot connect to {where}: host name not found", kind=ErrorKind.NOT_FOUND
            )
        if isinstance(cause, FileNotFoundError) and target.scheme == "unix":
            return ConnectError(
                f"cannot connect to {where}: no such socket", kind=ErrorKind.NOT_FOUND
            )
        if isinstance(cause, TimeoutError | socket.timeout):
            return _timeout(target)
    if any(
        isinstance(cause, OSError) and cause.errno == errno.ECONNRESET for cause in _chain(error)
    ):
        hint = "" if target.tls else "; if it is a TLS port, use rediss://"
        return ConnectError(
            f"{where} closed the connection before answering{hint}", kind=ErrorKind.CLOSED
        )
    return ConnectError(f"cannot connect to {where}: {first_line(str(error))}")


STALLED_OR_PLAINTEXT = " (a stopped or overloaded server; or a plaintext port: use redis://)"


def _timeout(target: Target) -> ConnectError:
    # A plaintext server reads a TLS ClientHello as a command and waits for the rest.
    hint = STALLED_OR_PLAINTEXT if target.tls else ""
    return ConnectError(
        f"cannot connect to {target.where}: timed out after {target.timeout:g}s{hint}",
        kind=ErrorKind.TIMEOUT,
    )


def _verify_message(error: ssl.SSLCertVerificationError, target: Target) -> str:
    reason = error.verify_message or error.reason or "verification failed"
    where = target.where
    if "Hostname mismatch" in reason or "IP address mismatch" in reason:
        return (
            f"TLS handshake with {where} failed: the server certificate is not valid for "
            f"'{target.server_name}'; connect with a name it lists (see `redkeep certs show`)"
        )
    if "expired" in reason:
        return f"TLS handshake with {where} failed: the server certificate has expired"
    return (
        f"TLS handshake with {where} failed: server certificate not trusted ({reason}); "
        "pass the CA that signed it with --tls-ca"
    )


TLS_REASONS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate; "
    "pass --tls-cert and --tls-key",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server rejected the handshake (a client certificate "
    "is required, or no cipher in common)",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust our client certificate (unknown CA); "
    "use one issued by its CA (`redkeep certs issue`)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server rejected our client certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server says our client certificate has expired",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common (protocol version refused)",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common (protocol version refused)",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common (protocol version refused)",
    "WRONG_VERSION_NUMBER": "the server does not speak TLS there; for a plaintext port use redis://",
    "PEM_LIB": "cannot read the client certificate or key (not PEM?)",
    "KEY_VALUES_MISMATCH": "the client key does not match the client certificate",
}


def _tls_eof_reason(target: Target) -> str:
    # With TLS 1.3 the server's refusal of a client can arrive as a bare EOF instead of an alert.
    if target.tls_cert is None:
        return (
            "the server closed the session at once; it requires a client certificate: "
            "pass --tls-cert and --tls-key"
        )
    return "the server closed the session at once; it rejected our client certificate"


def _tls_reason(error: ssl.SSLError) -> str:
    return TLS_REASONS.get(error.reason or "", first_line(str(error)))


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def first_line(text: str) -> str:
    """The first line of `text`, for one-line messages."""
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
