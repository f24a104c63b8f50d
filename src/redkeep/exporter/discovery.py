"""`/discover-cluster-nodes`: every node of the deployment, as Prometheus http_sd JSON.

The deployment is asked from a seed (`redis/discover.py`: CLUSTER NODES on a cluster node; the
Sentinels' view on a Sentinel; INFO replication and the Sentinels' hello on a data node), with
the exporter's own user, password and TLS files. The seeds are tried in turn, so one node down
does not blind Prometheus. A node the deployment lists is offered only when `/scrape` would
accept it (the exporter's allow-list): discovery never widens what the exporter connects to.
Nodes the cluster marks failed are listed too: their scrape then says what is wrong with them.
The answer is what redis_exporter serves (`[{"targets": [...], "labels": {}}]`), the targets in
the form the allow-list gives them, so a static list of the same URLs merges with it.
"""

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redkeep.errors import RedkeepError, UsageError
from redkeep.exporter.targets import key_of
from redkeep.redis.discover import discover
from redkeep.redis.target import Target, parse_url

LOG = logging.getLogger("redkeep.exporter")


def target_url(target: Target) -> str:
    """A /scrape `target=` value for an allowed target (no credentials)."""
    db = f"/{target.db}" if target.db else ""
    return f"{target.scheme}://{target.where}{db}"


@dataclass
class NodeDiscovery:
    seeds: Sequence[Target]
    allowed: Mapping[str, Target]
    timeout: float = 10.0

    def targets(self) -> list[str]:
        """The allowed URLs of every node; raise RedkeepError when no seed answers."""
        deadline = time.monotonic() + self.timeout
        failures = []
        for seed in self.seeds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                found = discover(seed, timeout=remaining)
            except RedkeepError as error:
                failures.append(f"{seed.where}: {error}")
                continue
            addresses = [node.target for node in found.deployment.nodes]
            for skipped in found.skipped:  # failed nodes too: their own scrape says why
                try:
                    addresses.append(parse_url(f"{seed.scheme}://{skipped.address}"))
                except UsageError:
                    continue
            return self._allowed(addresses)
        raise RedkeepError("no seed answered: " + "; ".join(failures or ["out of time"]))

    def _allowed(self, addresses: list[Target]) -> list[str]:
        urls, refused = set(), set()
        for address in addresses:
            allowed = self.allowed.get(key_of(address))
            if allowed is None:
                refused.add(address.where)
            else:
                urls.add(target_url(allowed))
        if refused:
            LOG.warning(
                "discovery: not in the exporter's targets, left out: %s", ", ".join(sorted(refused))
            )
        return sorted(urls)

    def http_sd(self) -> str:
        return json.dumps([{"targets": self.targets(), "labels": {}}], indent=1) + "\n"
