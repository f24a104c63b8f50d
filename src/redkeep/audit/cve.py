"""Known Redis CVEs per branch, from the data file `cves.yaml` (with the date it was updated)."""

from functools import cache
from importlib import resources

import yaml

Version = tuple[int, ...]


@cache
def load() -> dict:
    return yaml.safe_load(resources.files("redkeep.audit").joinpath("cves.yaml").read_text())


def parse(text: str) -> Version:
    return tuple(int(part) for part in str(text).split("."))


def branch(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def end_of_life(version: Version) -> bool:
    data = load()
    return branch(version) in data["end_of_life"] or version[:2] < parse(data["oldest_supported"])


def known_branch(version: Version) -> bool:
    """Whether the data covers this branch (not a newer, older or made-up one)."""
    data = load()
    branches = {key for item in data["cves"] for key in item["fixed"]} | set(data["end_of_life"])
    return branch(version) in branches


def unfixed(version: Version) -> list[dict]:
    """The CVEs this version still has."""
    data = load()
    name = branch(version)
    found = []
    for item in data["cves"]:
        fixed = item["fixed"]
        # Not listed: not affected. EOL: never fixed there. "?": no fix known, counted as open.
        affected = name in fixed and (fixed[name] in ("EOL", "?") or version < parse(fixed[name]))
        if affected:
            found.append(item)
    return found


def minimum_safe(version: Version) -> str | None:
    """The first release of this branch with every listed fix, or None for a dead branch."""
    if end_of_life(version):
        return None
    name = branch(version)
    fixes = [
        parse(item["fixed"][name])
        for item in load()["cves"]
        if item["fixed"].get(name, "EOL") not in ("EOL", "?")
    ]
    return ".".join(map(str, max(fixes))) if fixes else None
