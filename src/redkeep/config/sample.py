"""`redkeep config sample`: a commented redkeep.yaml generated from the schema.

Each setting is preceded by its description and shows its default, so the sample is also the
reference documentation of the file and always agrees with the validator.
"""

import json
import re
from typing import Any

import yaml
from pydantic import BaseModel

from redkeep.config.schema import Settings

INDENT = "  "
PLAIN = re.compile(r"[A-Za-z0-9_.+/-]+")


HEADER = (
    "# redkeep.yaml: configuration of a redkeep deployment bundle.\n"
    "# Run `redkeep config sample` for every setting with its default.\n"
    "# Environment variables override settings: REDKEEP_REDIS__TLS_PORT=6390 sets redis.tls_port.\n"
)


def render_sample(settings: Settings | None = None) -> str:
    """Return commented YAML for `settings` (default: all defaults), every field described."""
    instance = settings if settings is not None else Settings()
    return HEADER + "\n".join(_lines(instance, depth=0)) + "\n"


def _lines(instance: BaseModel, depth: int) -> list[str]:
    lines = []
    pad = INDENT * depth
    for name, field in type(instance).model_fields.items():
        value = getattr(instance, name)
        if field.description:
            lines.append(f"{pad}# {field.description}")
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.extend(_lines(value, depth + 1))
        elif _holds_models(value):
            lines.append(f"{pad}{name}:")
            lines.extend(_block(value, depth + 1))
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}")
    return lines


def _holds_models(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return any(isinstance(item, BaseModel) for item in items)


def _block(value: list | dict, depth: int) -> list[str]:
    """A list or mapping of settings objects as block YAML (their defaults left out)."""
    if isinstance(value, dict):
        data: Any = {
            key: item.model_dump(mode="json", exclude_defaults=True) for key, item in value.items()
        }
    else:
        data = [item.model_dump(mode="json", exclude_defaults=True) for item in value]
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000)
    return [INDENT * depth + line for line in text.splitlines()]


def _scalar(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    if isinstance(value, str):
        # Bare only when YAML reads it back as this very string, in a flow list too.
        if PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
            return value
        return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar
    return json.dumps(value)
