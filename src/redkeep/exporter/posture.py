"""Hardening posture as metrics: what no exporter reports.

- TLS: seconds until the served certificate expires (from a real handshake).
- Authentication: whether an unauthenticated connection gets in (read from the default user's
  flags when ACL GETUSER is allowed, else by knocking), whether the default user is enabled,
  how many users have no password (ACL GETUSER: counted, the hashes never leave).
- `protected-mode`, and ACL LOG entries by reason (denied commands, keys, channels, logins).
- The backup runs' textfile metrics, passed through when configured.

The probes that open connections run in the background (`Background`), never in a scrape.
"""

import socket
import ssl
import time
from pathlib import Path
from typing import Any

import hiredis

from redkeep.errors import RedkeepError
from redkeep.exporter.collectors import Collector, State, text
from redkeep.exporter.exposition import Family, gauge, read_textfile
from redkeep.redis.acl import parse_getuser
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target
from redkeep.redis.tls import client_context


def acl_log_commands(state: State) -> list[tuple[str, ...]]:
    if state.sentinel:  # a Sentinel's exporter user may not read its ACL log
        return []
    return [("ACL", "LOG", "128")]


def acl_log_parse(state: State, replies: list[Any]) -> list[Family]:
    """ACL LOG entries by reason (their `count` summed: repeated events are grouped)."""
    totals: dict[str, float] = {}
    for entry in replies[0] or []:
        fields = dict(zip((text(key) for key in entry[::2]), entry[1::2], strict=False))
        reason = text(fields.get("reason", b"unknown"))
        totals[reason] = totals.get(reason, 0) + float(fields.get("count", 1))
    family = Family("redkeep_acl_log_entries", "gauge", "Events in ACL LOG by reason")
    for reason in ("auth", "command", "key", "channel"):
        family.add(totals.pop(reason, 0.0), {"reason": reason})
    for reason, total in totals.items():
        family.add(total, {"reason": reason})
    return [family]


ACL_LOG = Collector("acl_log", acl_log_commands, acl_log_parse)


def config_posture(state: State) -> list[Family]:
    if "protected-mode" not in state.config:
        return []
    enabled = 1 if state.config["protected-mode"] == "yes" else 0
    return [gauge("redkeep_protected_mode", "1 when protected-mode is yes", enabled)]


def probe_posture(target: Target, timeout: float = 5.0) -> list[Family]:
    """The slow probes (fresh connections, a TLS handshake); run in the background."""
    users = _acl_users(target, timeout)
    if users is not None:
        default_on, default_nopass, nopass = users
        # Redis logs a new connection in as `default` exactly when it is on and nopass: no
        # need to knock (a knock would count as a NOAUTH error in Redis's own statistics).
        families = [
            _open_door(1 if default_on and default_nopass else 0),
            gauge("redkeep_default_user_enabled", "1 when the default user is on", default_on),
            gauge("redkeep_users_without_password", "Enabled ACL users with nopass", nopass),
        ]
    else:  # this user may not read ACLs: try the door
        families = [_unauthenticated_access(target, timeout)]
    if target.tls:
        families += _certificate(target, timeout)
    return [family for family in families if family is not None]


def _open_door(value: int) -> Family:
    return gauge(
        "redkeep_unauthenticated_access", "1 when a client without credentials gets in", value
    )


def _unauthenticated_access(target: Target, timeout: float) -> Family | None:
    """Does a connection without credentials get an answer to PING?"""
    anonymous = target.without_credentials(timeout)
    try:
        connection = RawConnection(anonymous, timeout)
    except RedkeepError:
        return None  # cannot connect at all: redis_up says so
    try:
        (reply,) = connection.pipeline([("PING",)], time.monotonic() + timeout)
    except RedkeepError:
        return None
    finally:
        connection.close()
    return _open_door(1 if reply in (b"PONG", "PONG") else 0)


def _acl_users(target: Target, timeout: float) -> tuple[int, int, int] | None:
    """(default user on, default user nopass, enabled users with nopass) from ACL GETUSER,
    hashes dropped; None when this user may not look."""
    connection = RawConnection(target, timeout)
    try:
        connection.login()
        deadline = time.monotonic() + timeout
        (users,) = connection.pipeline([("ACL", "USERS")], deadline)
        if not isinstance(users, list):
            return None  # NOPERM: say nothing rather than guess
        names = [text(name) for name in users]
        replies = connection.pipeline([("ACL", "GETUSER", name) for name in names], deadline)
    finally:
        connection.close()
    default_on, default_nopass, nopass = 0, 0, 0
    for name, reply in zip(names, replies, strict=True):
        user = None if isinstance(reply, hiredis.ReplyError) else parse_getuser(reply)
        if user is None:
            return None  # refused, or a user deleted in between: say nothing
        if name == "default":
            default_on, default_nopass = int(user.enabled), int(user.nopass)
        if user.enabled and user.nopass:
            nopass += 1
    return default_on, default_nopass, nopass


def _certificate(target: Target, timeout: float) -> list[Family]:
    """The served certificate's expiry, from a verified handshake.

    `ssl` decodes a verified peer certificate itself, so the exporter does without
    cryptography (8 MiB of resident memory for one date).
    """
    context = client_context(target.tls_ca, target.tls_cert, target.tls_key)
    try:
        with (
            socket.create_connection((target.host, target.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=target.host) as tls,
        ):
            not_after = tls.getpeercert().get("notAfter")
    except (OSError, ssl.SSLError):
        return []  # no handshake, no date: redis_up and the scrape errors tell why
    if not not_after:
        return []
    expires = ssl.cert_time_to_seconds(not_after)
    return [
        gauge(
            "redkeep_tls_certificate_expires_in_seconds",
            "Seconds until the served certificate expires",
            round(expires - time.time()),
        ),
        gauge(
            "redkeep_tls_certificate_not_after_timestamp_seconds",
            "Expiry of the served certificate",
            float(expires),
        ),
    ]


def backup_families(path: Path | None) -> list[Family]:
    """The backup runs' textfile metrics (redkeep_backup_*), as the exporter's own."""
    return textfile_families(path, "redkeep_backup_", "From the backup runs")


def audit_families(path: Path | None) -> list[Family]:
    """`redkeep audit`'s textfile metrics (findings by severity, score), when it has run."""
    return textfile_families(path, "redkeep_audit_", "From the last redkeep audit")


def textfile_families(path: Path | None, prefix: str, help_text: str) -> list[Family]:
    """Gauges from a Prometheus textfile written by another redkeep command."""
    families = []
    for family in read_textfile(path, prefix):
        if family.samples:
            gauges = Family(family.name, "gauge", help_text)
            gauges.samples = family.samples
            families.append(gauges)
    return families
