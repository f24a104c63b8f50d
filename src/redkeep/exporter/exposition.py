"""Metric families and the Prometheus text exposition format (version 0.0.4).

Built by hand, not with prometheus_client's registry: redis_exporter's names include counters
without a `_total` suffix and gauges with one, and client_python renames those. This keeps the
names exactly, and a scrape is a list of families rendered once.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    name: str
    kind: str  # gauge, counter, summary, histogram
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, labels: dict[str, str] | None = None, suffix: str = "") -> "Family":
        self.samples.append((suffix, labels or {}, value))
        return self


def gauge(name: str, help_text: str, value: float | None = None, **labels: str) -> Family:
    family = Family(name, "gauge", help_text)
    if value is not None:
        family.add(value, labels)
    return family


def counter(name: str, help_text: str, value: float | None = None, **labels: str) -> Family:
    family = Family(name, "counter", help_text)
    if value is not None:
        family.add(value, labels)
    return family


def render(families: Iterable[Family]) -> str:
    """The exposition text; families with no samples are left out."""
    out = []
    for family in families:
        if not family.samples:
            continue
        out.append(f"# HELP {family.name} {_escape_help(family.help)}\n")
        out.append(f"# TYPE {family.name} {family.kind}\n")
        for suffix, labels, value in family.samples:
            out.append(f"{family.name}{suffix}{_labels(labels)} {format_value(value)}\n")
    return "".join(out)


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
