"""Metric families and the Prometheus text exposition format (version 0.0.4): the one writer
and the one reader of it in redkeep.

Built by hand, not with prometheus_client's registry: redis_exporter's names include counters
without a `_total` suffix and gauges with one, and client_python renames those. This keeps the
names exactly, and a scrape is a list of families rendered once. The exporter and the proxy
serve `render`'s text; `backup run` and `audit` write textfiles (for node_exporter, and for
the exporter, which passes them through) with `write_textfile`, read back with `read_textfile`.
"""

import math
import re
from collections.abc import Iterable
from pathlib import Path

from redkeep.fsutil import PUBLIC_MODE, atomic_write

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


def render(families: Iterable[Family], keep_empty: bool = False) -> str:
    """The exposition text; families with no samples are left out, unless `keep_empty` (a
    textfile announces every family it may hold, HELP and TYPE, before the first sample)."""
    if len(_LABEL_TEXT) > CACHE_LIMIT or len(_HEADER_TEXT) > CACHE_LIMIT:
        _LABEL_TEXT.clear()
        _HEADER_TEXT.clear()
    out: list[str] = []
    append = out.append  # this loop runs for every sample of every scrape
    for family in families:
        if not family.samples and not keep_empty:
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


def write_textfile(path: Path, families: Iterable[Family]) -> None:
    """A textfile for node_exporter's textfile collector, every family announced; written
    atomically, so a collector never reads half a file."""
    atomic_write(path, render(families, keep_empty=True), PUBLIC_MODE)


def read_textfile(path: Path | None, prefix: str = "") -> list[Family]:
    """The families of a textfile ([] when there is none); see `parse`."""
    if path is None or not path.exists():
        return []
    return parse(path.read_text(), prefix)


# HELP or TYPE, the name, then (after one blank) the help text or the type.
_COMMENT = re.compile(r"#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t](.*))?")
# A sample line: name, optional {labels}, value, optional timestamp (milliseconds).
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(,|$)')
_INTEGER = re.compile(r"[+-]?\d+")
_UNESCAPE = re.compile(r"\\(.)")
_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


def parse(text: str, prefix: str = "") -> list[Family]:
    """The families in exposition text, in the order they first appear; what `render` wrote
    comes back as it was. A family's kind and help come from its TYPE and HELP lines ("untyped"
    and "" without them); a histogram's or summary's _bucket/_count/_sum samples are its own.

    Only samples whose name starts with `prefix` are read; a line among them that is not a
    sample raises ValueError.
    """
    families: dict[str, Family] = {}
    for line in text.split("\n"):  # only \n ends a line: a label value may hold \r
        if line.startswith("#"):
            comment = _COMMENT.fullmatch(line)
            if comment is not None and comment[2].startswith(prefix):
                family = families.get(comment[2]) or families.setdefault(
                    comment[2], Family(comment[2], "untyped", "")
                )
                if comment[1] == "HELP":
                    family.help = _UNESCAPE.sub(_unescaped, comment[3] or "")
                else:
                    family.kind = (comment[3] or "").strip()
            continue
        if not line.strip() or not line.lstrip().startswith(prefix):
            continue
        name, labels, value = parse_sample(line.strip())
        family, suffix = _family_of(families, name)
        family.add(value, labels, suffix)
    return list(families.values())


def parse_sample(line: str) -> tuple[str, dict[str, str], float]:
    """`name{label="value",...} value [timestamp]` -> (name, labels, value); ValueError if the
    line is not one."""
    match = _SAMPLE.fullmatch(line)
    if match is None:
        raise ValueError(f"not a Prometheus sample: {line[:120]!r}")
    name, label_text, value = match.groups()
    labels = {}
    position = 0
    while label_text and position < len(label_text):
        pair = _LABEL.match(label_text, position)
        if pair is None or pair.end() == position:
            raise ValueError(f"bad labels in Prometheus sample: {line[:120]!r}")
        labels[pair[1]] = _UNESCAPE.sub(_unescaped, pair[2])
        position = pair.end()
    number = int(value) if _INTEGER.fullmatch(value) else float(value)
    return name, labels, number


def _family_of(families: dict[str, Family], name: str) -> tuple[Family, str]:
    """The family a sample belongs to, and the sample's suffix within it."""
    family = families.get(name)
    if family is not None:
        return family, ""
    for kind, suffixes in _SUFFIXES.items():
        for suffix in suffixes:
            base = families.get(name.removesuffix(suffix))
            if name.endswith(suffix) and base is not None and base.kind == kind:
                return base, suffix
    return families.setdefault(name, Family(name, "untyped", "")), ""


def _unescaped(match: re.Match) -> str:
    return "\n" if match[1] == "n" else match[1]
