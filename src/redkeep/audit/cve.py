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
    """Whether the data says anything about this branch (a newer one it cannot judge)."""
    data = load()
    branches = {parse(key) for item in data["cves"] for key in item["fixed"]}
    branches |= {parse(key) for key in data["end_of_life"]}
    return version[:2] <= max(branches)


def unfixed(version: Version) -> list[dict]:
    """The CVEs this version still has."""
    data = load()
    name = branch(version)
    oldest = data["oldest_supported"]
    found = []
    for item in data["cves"]:
        fixed = item["fixed"]
        if name in fixed:
            affected = fixed[name] == "EOL" or version < parse(fixed[name])
        else:  # a branch older than every supported one had the code if the oldest had it
            affected = version[:2] < parse(oldest) and oldest in fixed
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
        if item["fixed"].get(name, "EOL") != "EOL"
    ]
    return ".".join(map(str, max(fixes))) if fixes else None
