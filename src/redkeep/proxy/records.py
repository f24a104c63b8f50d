"""What the proxy reports about connections: immutable records, made by the data path once.

The access log and the metrics read these, never a live Session, so neither depends on the
data path's internals and a record cannot change while it is being written out.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConnectionRecord:
    """A connection that has ended."""

    client: str
    port: int
    user: str | None
    tls: str | None
    client_cert: str | None
    bytes_in: int
    bytes_out: int
    commands: int | None  # None in pass-through: requests were not read
    refused: dict[str, int] = field(default_factory=dict)
    duration: float = 0.0
    closed_by: str = ""
    error: str | None = None


@dataclass(frozen=True)
class RefusedCommand:
    client: str
    port: int
    user: str | None
    command: str
    reason: str


@dataclass(frozen=True)
class LiveTotals:
    """Sums over the connections open now, added to the ended ones' at scrape time."""

    connections: int
    commands: int
    bytes_in: int
    bytes_out: int
