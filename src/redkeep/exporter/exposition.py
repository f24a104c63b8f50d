"""Metric families and the Prometheus text exposition format (version 0.0.4).

Built by hand, not with prometheus_client's registry: redis_exporter's names include counters
without a `_total` suffix and gauges with one, and client_python renames those. This keeps the
names exactly, and a scrape is a list of families rendered once.
"""

import math
from collections.abc import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Family:
    """One metric family: name, type, help and its samples (suffix, labels, value)."""

    __slots__ = ("name", "kind", "help", "samples")  # a scrape builds a few hundred of these

    def __init__(self, name: str, kind: str, help: str) -> None:  # noqa: A002 - the exposition term
        self.name = name
        self.kind = kind  # gauge, counter, summary, histogram
        self.help = help
        self.samples: list[tuple[str, dict[str, str], float]] = []

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


# Rendered label sets and family headers, reused across scrapes: the same commands,
# databases and quantiles come back every time, and formatting them is most of a render.
_LABEL_TEXT: dict[tuple, str] = {}
_HEADER_TEXT: dict[tuple[str, str, str], str] = {}
CACHE_LIMIT = 20_000  # cleared when full, so label churn (client names) cannot grow it


def render(families: Iterable[Family]) -> str:
    """The exposition text; families with no samples are left out."""
    if len(_LABEL_TEXT) > CACHE_LIMIT or len(_HEADER_TEXT) > CACHE_LIMIT:
        _LABEL_TEXT.clear()
        _HEADER_TEXT.clear()
    out: list[str] = []
    append = out.append  # this loop runs for every sample of every scrape
    for family in families:
        if not family.samples:
            continue
        name = family.name
        key = (name, family.kind, family.help)
        header = _HEADER_TEXT.get(key)
        if header is None:
            header = _HEADER_TEXT[key] = (
                f"# HELP {name} {_escape_help(family.help)}\n# TYPE {name} {family.kind}\n"
            )
        append(header)
        for suffix, labels, value in family.samples:
            text = str(value) if type(value) is int else format_value(value)
            if labels:
                label_key = tuple(labels.items())
                label_text = _LABEL_TEXT.get(label_key)
                if label_text is None:
                    label_text = _LABEL_TEXT[label_key] = _labels(labels)
                append(f"{name}{suffix}{label_text} {text}\n")
            else:
                append(f"{name}{suffix} {text}\n")
    return "".join(out)


def format_value(value: float) -> str:
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is bool:
        return "1" if value else "0"
    if value.is_integer() and -1e15 < value < 1e15:  # false for NaN and the infinities
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _labels(labels: dict[str, str]) -> str:
    parts = []
    for key, value in labels.items():
        text = value if type(value) is str else str(value)
        if '"' in text or "\\" in text or "\n" in text:
            text = _escape(text)
        parts.append(f'{key}="{text}"')
    return "{" + ",".join(parts) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
