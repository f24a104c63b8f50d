"""Where a Redis server is and how to log in: URLs, HOST:PORT, options, environment -> Target.

Sources, first match wins: `--url`, else `REDIS_URL`, else the bundle's URL for the command's
role (`actions/locate.py` does not consult `REDIS_URL` when there is a bundle). The password
comes from the URL, else `--password-file`, else the bundle's `.env` (for a user it knows, and
only over TLS to the bundle's own endpoints), else `REDIS_PASSWORD`. TLS files come from the
options, else from the bundle (for its own endpoints). Secrets are never part of a message:
URLs are shown with the password masked.
Standard library only: the proxy, the exporter and the config schema import this.
"""

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from redkeep.errors import UsageError

SCHEMES = ("redis", "rediss", "unix")


DEFAULT_PORT = 6379


MASK = "****"


@dataclass(frozen=True)
class ConnectionOptions:
    """What the user passed on the command line (all optional)."""

    url: str | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    timeout: float = 5.0


@dataclass(frozen=True)
class Target:
    """A fully resolved Redis endpoint with credentials; `repr` never shows the password."""

    scheme: str
    host: str = ""
    port: int = DEFAULT_PORT
    socket_path: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    password_source: str = ""
    url_source: str = ""
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    timeout: float = 5.0
    # The name the server's certificate must carry when it is not `host`: a node discovered
    # at the IP address it announces is checked against the name the seed was reached by.
    tls_name: str = ""

    @property
    def server_name(self) -> str:
        """The host name TLS checks the certificate against."""
        return self.tls_name or self.host

    def without_credentials(self, timeout: float) -> "Target":
        """The same endpoint and TLS files, no user or password: what an anonymous client is."""
        return dataclasses.replace(
            self, username=None, password=None, password_source="", timeout=timeout
        )

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    @property
    def where(self) -> str:
        """The endpoint for messages: host:port or the socket path."""
        if self.scheme == "unix":
            return self.socket_path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def display_url(self) -> str:
        """The URL with the password masked."""
        user = self.username or ""
        secret = f":{MASK}" if self.password else ""
        auth = f"{user}{secret}@" if (user or secret) else ""
        if self.scheme == "unix":
            return f"unix://{auth}{self.socket_path}"
        db = f"/{self.db}" if self.db else ""
        return f"{self.scheme}://{auth}{self.where}{db}"

    def __repr__(self) -> str:
        return f"Target({self.display_url})"


def parse_url(url: str) -> Target:
    """Parse a redis://, rediss:// or unix:// URL into a Target; raise UsageError if invalid."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # The error text may quote the URL, password included: say only what is wrong.
        raise UsageError(
            f"invalid Redis URL {mask_url(url)}: bad port or address; percent-encode special "
            "characters of the password (/ # ? @ as %2F %23 %3F %40)"
        ) from None
    if parts.scheme not in SCHEMES:
        raise UsageError(
            f"invalid Redis URL {mask_url(url)}: scheme must be redis://, rediss:// or unix://"
        )
    if parts.scheme != "unix" and parts.hostname is None and "@" in url.partition("://")[2]:
        raise UsageError(
            f"invalid Redis URL {mask_url(url)}: cannot find the host; percent-encode special "
            "characters of the password (/ # ? @ as %2F %23 %3F %40)"
        )
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    db = _db_of(parts, url)
    if parts.scheme == "unix":
        if not parts.path:
            raise UsageError(f"invalid Redis URL {mask_url(url)}: unix:// needs a socket path")
        return Target("unix", socket_path=parts.path, db=db, username=username, password=password)
    if not parts.hostname:
        raise UsageError(f"invalid Redis URL {mask_url(url)}: no host")
    return Target(
        parts.scheme,
        host=parts.hostname,
        port=port or DEFAULT_PORT,
        db=db,
        username=username,
        password=password,
        password_source="the URL" if password is not None else "",
    )


def _db_of(parts: SplitResult, url: str) -> int:
    query_db = parse_qs(parts.query).get("db", [None])[0]
    path_db = parts.path.strip("/") if parts.scheme != "unix" else ""
    raw = query_db or path_db or "0"
    if not raw.isdigit():
        raise UsageError(f"invalid Redis URL {mask_url(url)}: database must be a number")
    return int(raw)


def mask_url(url: str) -> str:
    """Return `url` with any password replaced by ****; safe to print or log.

    Works on the text, not a parse: a password with '/', '#' or '?' in it defeats urlsplit.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostinfo = rest.rpartition("@")
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:{MASK}@{hostinfo}"


def resolve_target(
    options: ConnectionOptions,
    environ: Mapping[str, str],
    fallback: Target | None = None,
    known_passwords: Mapping[str, str] | None = None,
    prefer_fallback: bool = False,
    own_endpoints: Sequence[tuple[str, int]] = (),
) -> Target:
    """Combine command-line options, environment and a bundle fallback into one Target.

    The URL comes from --url, else REDIS_URL, else `fallback` (the bundle's own endpoint);
    with `prefer_fallback` REDIS_URL is not consulted. The password comes from the URL, else
    --password-file, else `known_passwords` by user name (the bundle's .env), else
    REDIS_PASSWORD. The bundle's passwords and TLS files are for its own server only: the
    fallback and `own_endpoints` (HOST, PORT: its other nodes, its proxy), over TLS. Any
    other server gets neither, so a stray REDIS_URL or a mistyped --url cannot collect the
    bundle's secrets. Raise UsageError without a URL.
    """
    if options.url:
        target = parse_url(options.url)
    elif environ.get("REDIS_URL") and not (prefer_fallback and fallback is not None):
        target = replace(parse_url(environ["REDIS_URL"]), url_source="REDIS_URL")
    elif fallback is not None:
        target = fallback
    else:
        raise UsageError(
            "no Redis to talk to: pass --url, set REDIS_URL, or run inside a bundle "
            "(a directory with redkeep.yaml, see `redkeep init`)"
        )
    ours = [(fallback.host, fallback.port), *own_endpoints] if fallback is not None else []
    # Plain text never reaches a bundle (it serves TLS only): whatever answers there is not it.
    own = target.tls and is_one_of(target, ours)
    if target.password is None:
        target = _with_password(target, options, environ, (known_passwords or {}) if own else {})
    if own:
        # A bundle's own CA and client certificate are the sensible default for its server.
        target = replace(
            target,
            tls_ca=target.tls_ca or fallback.tls_ca,
            tls_cert=target.tls_cert or fallback.tls_cert,
            tls_key=target.tls_key or fallback.tls_key,
        )
    return replace(
        target,
        tls_ca=options.tls_ca or target.tls_ca,
        tls_cert=options.tls_cert or target.tls_cert,
        tls_key=options.tls_key or target.tls_key,
        timeout=options.timeout,
    )


def _with_password(
    target: Target,
    options: ConnectionOptions,
    environ: Mapping[str, str],
    known_passwords: Mapping[str, str],
) -> Target:
    """--password-file, else the bundle's password of a user it knows, else REDIS_PASSWORD.

    The bundle wins over REDIS_PASSWORD for its own users because a sourced .env sets
    REDIS_PASSWORD to the app's password, which is wrong for admin or exporter.
    """
    if options.password_file is not None:
        password = read_password_file(options.password_file)
        return replace(target, password=password, password_source=str(options.password_file))
    if target.username and known_passwords.get(target.username):
        password = known_passwords[target.username]
        return replace(target, password=password, password_source="the bundle's .env")
    if environ.get("REDIS_PASSWORD"):
        return replace(target, password=environ["REDIS_PASSWORD"], password_source="REDIS_PASSWORD")
    return target


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_one_of(target: Target, endpoints: Sequence[tuple[str, int]]) -> bool:
    """Does `target` point at one of the (HOST, PORT) `endpoints` (that port, and that host or
    both loopback)?"""
    return any(_same_endpoint(target, host, port) for host, port in endpoints)


def _same_endpoint(target: Target, host: str, port: int) -> bool:
    same_host = target.host == host or (target.host in LOOPBACK_NAMES and host in LOOPBACK_NAMES)
    return target.port == port and same_host


def read_password_file(path: Path) -> str:
    """Return the first line of a password file; raise UsageError if unreadable or empty."""
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"cannot read password file {path}: {error.strerror}") from None
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise UsageError(f"password file {path} is empty; put the password on its first line")
    return password


# A name or IPv4 address, or an IPv6 address in brackets; then the port.
HOST_PORT = re.compile(
    r"(?:\[(?P<ipv6>[0-9a-fA-F:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})"
)


def parse_host_port(value: str, what: str = "", example: str = "127.0.0.1:6379") -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT' as (host, port); raise UsageError in one line otherwise.

    `what` names the setting or flag in the message ("--listen"); `example` shows a good value.
    """
    match = HOST_PORT.fullmatch(value)
    if match is None or not 0 < int(match["port"]) < 65536:
        setting = f"{what} " if what else ""
        raise UsageError(
            f"{setting}'{value}' is not HOST:PORT (an IPv6 address in brackets, a port from 1 "
            f"to 65535), e.g. {example}"
        )
    return match["ipv6"] or match["host"], int(match["port"])
