"""The exporter's background thread: app checks and posture probes, never in a scrape.

Results are swapped in whole (one assignment), so a scrape reads a consistent snapshot without
a lock and never waits for a check or a probe.
"""

import logging
import threading
import time
from collections.abc import Callable

from redkeep.errors import RedkeepError
from redkeep.exporter import appchecks
from redkeep.exporter.appchecks import AppCheckRunner
from redkeep.exporter.exposition import Family, gauge

LOG = logging.getLogger("redkeep.exporter")

TICK = 0.5


class Background:
    def __init__(
        self,
        app_checks: AppCheckRunner | None,
        probe: Callable[[], list[Family]] | None,
        probe_interval: float,
    ) -> None:
        self.app_checks = app_checks
        self.probe = probe
        self.probe_interval = probe_interval
        self.posture_families: list[Family] = []
        self.probe_ok: bool | None = None  # None: no probe yet
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
        if self.app_checks is not None:
            self.app_checks.close()

    def families(self) -> list[Family]:
        """Called by each scrape: the app checks' last results (ages computed now) and posture."""
        families = []
        if self.app_checks is not None:
            families += appchecks.families(dict(self.app_checks.results))
        if self.probe is not None and self.probe_ok is not None:
            families.append(
                gauge(
                    "redkeep_posture_probe_success",
                    "1 when the last posture probe (handshake, ACL users) worked",
                    1 if self.probe_ok else 0,
                )
            )
        return families + self.posture_families

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Nothing may end this thread: a dead one would freeze every app check and probe value.
            try:
                self._tick()
            except Exception:  # noqa: BLE001
                LOG.exception("background checks failed; trying again")
            self._stop.wait(TICK)

    def _tick(self) -> None:
        if self.app_checks is not None:
            self.app_checks.round()
        if self.probe is not None and time.monotonic() >= self._next_probe:
            self._next_probe = time.monotonic() + self.probe_interval
            try:
                self.posture_families = self.probe()
                self.probe_ok, self.probe_error = True, ""
            except Exception as error:  # noqa: BLE001 - reported as probe_success 0
                # Old posture values would claim a state nobody checked: drop them.
                self.posture_families = []
                message = error.message if isinstance(error, RedkeepError) else repr(error)
                if message != self.probe_error:
                    LOG.warning("posture probe failed: %s", message)
                self.probe_ok, self.probe_error = False, message
