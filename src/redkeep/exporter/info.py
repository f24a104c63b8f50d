"""`INFO ALL` text -> {section: {field: value}}, parsed by field name, values kept as text.

Keyspace lines (`db0:keys=1,expires=0,avg_ttl=0,subexpiry=0`) and the other `k=v,k=v` lines
(commandstats, errorstats, latencystats, replicas) are split into dicts by name, never by
position, so fields added by newer servers (Redis 7.4's `subexpiry`) cannot shift the others.
"""

# Fields whose value is a list of name=value pairs.
PAIR_FIELDS = ("db", "cmdstat_", "errorstat_", "latency_percentiles_usec_", "slave")


def parse_info(text: str) -> dict[str, dict[str, str | dict[str, str]]]:
    sections: dict[str, dict] = {}
    current = sections.setdefault("", {})
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            current = sections.setdefault(line[1:].strip().lower(), {})
            continue
        field, sep, value = line.partition(":")
        if not sep:
            continue
        current[field] = (
            split_pairs(value) if "=" in value and field.startswith(PAIR_FIELDS) else value
        )
    return sections


def split_pairs(value: str) -> dict[str, str]:
    """`keys=1,expires=0` -> {"keys": "1", "expires": "0"} (a value may itself contain '=')."""
    pairs = {}
    for item in value.split(","):
        key, _, rest = item.partition("=")
        pairs[key] = rest
    return pairs


def number(value: str) -> float | None:
    """An INFO value as a number: ok/true/up -> 1, err/fail/false/down -> 0, else a number."""
    if value.isdigit():  # most fields: kept an int, which renders without float formatting
        return int(value)
    try:
        return float(value)
    except ValueError:
        return WORDS.get(value.strip().lower())


WORDS = {
    **dict.fromkeys(("ok", "true", "up", "yes"), 1.0),
    **dict.fromkeys(("err", "fail", "false", "down", "no"), 0.0),
}
