"""The JSON shapes docs/json.md documents, read from the page, and a check of a document
against one: every key documented, every documented key there (unless optional), each value
of its type."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "json.md"
KEY_LINE = re.compile(r"^- `(?P<path>[^`]+)` \((?P<spec>[^)]*)\)")
TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "list": (list,),
    "null": (type(None),),
}


@dataclass(frozen=True)
class Key:
    types: tuple[str, ...]
    optional: bool


def shape(heading: str) -> dict[str, Key]:
    """The key list under `### heading` in docs/json.md: {path: Key}."""
    lines = DOC.read_text().splitlines()
    start = lines.index(f"### {heading}") + 1
    keys: dict[str, Key] = {}
    for line in lines[start:]:
        if line.startswith("#"):
            break
        match = KEY_LINE.match(line)
        if match:
            types, *flags = [part.strip() for part in match["spec"].split(",")]
            names = tuple(name.strip() for name in types.split(" or "))
            assert set(names) <= set(TYPES), f"{line}: unknown type"
            keys[match["path"]] = Key(names, "optional" in flags)
    assert keys, f"no keys under ### {heading}"
    return keys


def problems(document: Any, keys: dict[str, Key]) -> list[str]:
    """Where `document` departs from the documented shape (empty: it matches)."""
    found: list[str] = []
    _check(document, "", keys, found)
    return found


def _check(value: Any, path: str, keys: dict[str, Key], found: list[str]) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            child = _documented(path, name, keys)
            if child is None:
                found.append(f"{_join(path, name)}: not documented")
                continue
            _typed(item, child, keys[child], found)
            _check(item, child, keys, found)
        for child, key in keys.items():
            parent, _, name = child.rpartition(".")
            if name == "*" or name.endswith("[]") or key.optional:
                continue  # any key, a list's items, or a key that may be absent
            if parent == path and name not in value:
                found.append(f"{child}: documented, missing")
    elif isinstance(value, list):
        item_path = f"{path}[]"
        for item in value:
            if item_path not in keys:
                found.append(f"{item_path}: not documented")
                return
            _typed(item, item_path, keys[item_path], found)
            _check(item, item_path, keys, found)


def _documented(path: str, name: str, keys: dict[str, Key]) -> str | None:
    for candidate in (_join(path, name), _join(path, "*")):
        if candidate in keys:
            return candidate
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _typed(value: Any, path: str, key: Key, found: list[str]) -> None:
    allowed = tuple(kind for name in key.types for kind in TYPES[name])
    # bool is an int to Python; JSON keeps them apart.
    wrong_bool = isinstance(value, bool) and "boolean" not in key.types
    if not isinstance(value, allowed) or wrong_bool:
        found.append(f"{path}: {type(value).__name__} {value!r}, documented as {key.types}")
