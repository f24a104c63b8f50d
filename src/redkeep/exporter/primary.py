"""The current primary of a Sentinel deployment, where the application checks run.

The data nodes' planned roles go stale at the first failover, and a replica answers reads as
if nothing happened: checks run there would report a replica's values. So each connection
starts at the Sentinels: the first that answers names the primary (SENTINEL
GET-MASTER-ADDR-BY-NAME), and the node there must say it is the primary (INFO replication) -
a Sentinel may still name a node that was demoted. The runner asks the node again each round
(appchecks.AppCheckRunner `primary_only`) and comes back here when it is no longer the primary.
"""

import time
from collections.abc import Callable

import hiredis

from redkeep.errors import RedkeepError
from redkeep.exporter.collectors import text
from redkeep.redis.discover import peer
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import Target


def is_primary(connection: RawConnection, deadline: float) -> bool:
    (info,) = connection.pipeline([("INFO", "replication")], deadline)
    return not isinstance(info, hiredis.ReplyError) and "role:master" in text(info).split()


def connect_primary(
    sentinels: list[Target],
    master_name: str,
    login: Callable[[Target], RawConnection],
) -> RawConnection:
    """A logged-in connection to the primary the Sentinels name, checked to be the primary;
    raise RedkeepError saying what each Sentinel answered when none leads to one."""
    problems = []
    for sentinel in sentinels:
        deadline = time.monotonic() + sentinel.timeout
        try:
            asked = login(sentinel)
            try:
                (reply,) = asked.pipeline(
                    [("SENTINEL", "GET-MASTER-ADDR-BY-NAME", master_name)], deadline
                )
            finally:
                asked.close()
        except RedkeepError as error:
            problems.append(f"{sentinel.where}: {error.message}")
            continue
        if isinstance(reply, hiredis.ReplyError) or not reply:
            problems.append(f"{sentinel.where} names no primary for {master_name} ({reply})")
            continue
        node = peer(sentinel, text(reply[0]), int(text(reply[1])))
        try:
            connection = login(node)
        except RedkeepError as error:
            problems.append(f"{sentinel.where} names {node.where}: {error.message}")
            continue
        try:
            if is_primary(connection, deadline):
                return connection
        except RedkeepError as error:
            problems.append(f"{sentinel.where} names {node.where}: {error.message}")
        else:
            problems.append(f"{sentinel.where} names {node.where}, which is not a primary")
        connection.close()
    raise RedkeepError(f"no Sentinel leads to the primary of {master_name}: {'; '.join(problems)}")
