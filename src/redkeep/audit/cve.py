"""Known CVEs per branch of Redis and of Valkey, from the data file `cves.yaml` (dated).

Each server is judged against its own section: `flavour` is INFO's `server_name` ("redis" or
"valkey") and `version` the server's own release (Valkey's `valkey_version`, never the fixed
`redis_version:7.2.4` it also reports).
"""

from functools import cache
from importlib import resources

import yaml

Version = tuple[int, ...]


@cache
def load() -> dict:
    return yaml.safe_load(resources.files("redkeep.audit").joinpath("cves.yaml").read_text())


def flavours() -> tuple[str, ...]:
    """The servers the data has a section for."""
    return tuple(name for name, value in load().items() if isinstance(value, dict))


def _section(flavour: str) -> dict:
    section = load().get(flavour)
    if not isinstance(section, dict):
        raise KeyError(f"the CVE data has no section for {flavour}")
    return section


def parse(text: str) -> Version:
    return tuple(int(part) for part in str(text).split("."))


def branch(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def end_of_life(version: Version, flavour: str = "redis") -> bool:
    data = _section(flavour)
    return branch(version) in data["end_of_life"] or version[:2] < parse(data["oldest_supported"])


def branches(flavour: str = "redis") -> list[str]:
    """The branches the data covers for this server, oldest first."""
    data = _section(flavour)
    names = {key for item in data["cves"] for key in item["fixed"]} | set(data["end_of_life"])
    return sorted(names, key=parse)


def known_branch(version: Version, flavour: str = "redis") -> bool:
    """Whether the data covers this branch (not a newer, older or made-up one)."""
    return branch(version) in branches(flavour)


def unfixed(version: Version, flavour: str = "redis") -> list[dict]:
    """The CVEs this version still has."""
    name = branch(version)
    found = []
    for item in _section(flavour)["cves"]:
        fixed = item["fixed"]
        # Not listed: not affected. EOL: never fixed there. "?": no fix known, counted as open.
        affected = name in fixed and (fixed[name] in ("EOL", "?") or version < parse(fixed[name]))
        if affected:
            found.append(item)
    return found


def minimum_safe(version: Version, flavour: str = "redis") -> str | None:
    """The first release of this branch with every listed fix, or None for a dead branch."""
    if end_of_life(version, flavour):
        return None
    name = branch(version)
    fixes = [
        parse(item["fixed"][name])
        for item in _section(flavour)["cves"]
        if item["fixed"].get(name, "EOL") not in ("EOL", "?")
    ]
    return ".".join(map(str, max(fixes))) if fixes else None
