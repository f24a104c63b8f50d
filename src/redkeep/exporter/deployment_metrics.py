"""`/metrics` of a Sentinel or cluster bundle's exporter, which has no one main node.

Each node is its own target (`/scrape?target=`); what belongs to the whole deployment is served
here once: the app checks' results (exporter/appchecks.py, read on each key's own node), the
backup schedule's and `redkeep audit`'s textfile metrics. Served once, not on every node's
scrape: an alert on them then fires once per deployment, not once per node.
"""

import logging
from collections.abc import Callable
from pathlib import Path

from redkeep.exporter import posture
from redkeep.exporter.exposition import Family, render
from redkeep.exporter.scrape import AUDIT_METRICS

LOG = logging.getLogger("redkeep.exporter")


class DeploymentMetrics:
    def __init__(self, background: Callable[[], list[Family]], backup_metrics: Path | None):
        self.parts: dict[str, Callable[[], list[Family]]] = {
            "background": background,
            "backup": lambda: posture.backup_families(backup_metrics),
            "audit": lambda: posture.audit_families(
                backup_metrics.parent / AUDIT_METRICS if backup_metrics else None
            ),
        }

    def scrape(self, timeout: float) -> str:
        """Every part's families, and whether each part worked (a broken one costs only its
        own metrics)."""
        families: list[Family] = []
        success = Family("redkeep_exporter_collector_success", "gauge", "Last run of a collector")
        for name, part in self.parts.items():
            try:
                families += part()
                success.add(1, {"collector": name})
            except Exception as failure:  # noqa: BLE001 - one part's failure is its own
                success.add(0, {"collector": name})
                LOG.warning("%s metrics failed: %r", name, failure)
        return render([*families, success])
