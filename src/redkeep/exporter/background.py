"""The exporter's background thread: application checks and posture probes, never in a scrape.

Results are swapped in whole (one assignment), so a scrape reads a consistent snapshot without
a lock and never waits for a check or a probe.
"""

import threading
import time
from collections.abc import Callable

from redkeep.errors import RedkeepError
from redkeep.exporter import checks as check_metrics
from redkeep.exporter.checks import CheckRunner
from redkeep.exporter.exposition import Family

TICK = 0.5


class Background:
    def __init__(
        self,
        runner: CheckRunner | None,
        probe: Callable[[], list[Family]] | None,
        probe_interval: float,
    ) -> None:
        self.runner = runner
        self.probe = probe
        self.probe_interval = probe_interval
        self.check_families: list[Family] = []
        self.posture_families: list[Family] = []
        self.probe_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="redkeep-background", daemon=True)
        self._next_probe = 0.0

    def start(self) -> "Background":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.runner is not None:
            self.runner.close()

    def families(self) -> list[Family]:
        return self.check_families + self.posture_families

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.runner is not None:
                self.runner.round()
                self.check_families = check_metrics.families(dict(self.runner.outcomes))
            if self.probe is not None and time.monotonic() >= self._next_probe:
                self._next_probe = time.monotonic() + self.probe_interval
                try:
                    self.posture_families = self.probe()
                    self.probe_error = ""
                except RedkeepError as error:
                    self.probe_error = error.message
            self._stop.wait(TICK)
