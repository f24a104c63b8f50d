"""Exit statuses and the errors that carry them.

Every failure a user can cause or meet is a `RedkeepError` with a one-line message that says
what went wrong, where, and what to do. The CLI prints that line and exits with its status;
a traceback is shown only with `--debug`. A failure talking to Redis also has a `kind`, set
where it is raised: code branches on the kind, never on the words of the message.
"""

from enum import Enum, IntEnum, unique


@unique
class ExitStatus(IntEnum):
    OK = 0
    FAILURE = 1  # the command ran and the answer is "no": unhealthy, findings, refused
    USAGE = 2  # bad arguments or configuration
    UNREACHABLE = 3  # cannot connect or log in (refused, TLS, WRONGPASS, NOAUTH)
    CANNOT_CHECK = 4  # `backup verify`: the backup is newer than the local tools can read
    INTERRUPTED = 130


@unique
class ErrorKind(Enum):
    """What went wrong, for code to branch on (retry a login, pick a metric label)."""

    AUTH = "auth"  # WRONGPASS, NOAUTH: the credentials
    PERMISSION = "permission"  # NOPERM: logged in, but the user may not
    TIMEOUT = "timeout"  # no connection or no answer in time
    TLS = "tls"  # the handshake failed: trust, name, client certificate, version
    REFUSED = "refused"  # nothing listens there
    NOT_FOUND = "not found"  # no such host name or socket file
    CLOSED = "closed"  # the server closed the connection
    BROKEN = "broken"  # the connection failed midway (reset, broken pipe)
    PROTOCOL = "protocol"  # the peer does not speak RESP, or answered out of turn
    UNKNOWN_COMMAND = "unknown command"  # the server does not offer the command
    COMMAND = "command"  # another error reply
    OTHER = "other"


class RedkeepError(Exception):
    """A failure with a user-facing one-line message, an exit status and a kind."""

    status = ExitStatus.FAILURE
    kind = ErrorKind.OTHER

    def __init__(
        self, message: str, status: ExitStatus | None = None, kind: ErrorKind | None = None
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind

    @property
    def message(self) -> str:
        return str(self)


class UsageError(RedkeepError):
    status = ExitStatus.USAGE


class ConfigError(RedkeepError):
    """Invalid configuration; `problems` holds one line per problem found."""

    status = ExitStatus.USAGE

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class ConnectError(RedkeepError):
    status = ExitStatus.UNREACHABLE


class RedisCommandError(RedkeepError):
    """Redis answered with an error (WRONGPASS, NOAUTH, NOPERM, ...)."""


class StoreError(RedkeepError):
    """A backup destination cannot be used (missing bucket or object, no permission, down)."""


class DamagedBackup(RedkeepError):
    """The stored data itself is wrong: checksum, CRC, decryption or restore-drill mismatch.

    Only this kind of failure is recorded against a backup by `verify`; a wrong key or a
    missing local tool says nothing about the backup.
    """


class StreamError(RedkeepError):
    """A connection stalled or broke in the middle of a reply or a transfer."""
