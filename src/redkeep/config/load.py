"""Load `redkeep.yaml`: parse YAML, apply environment overrides, validate against the schema.

Environment overrides name a setting by its path: `REDKEEP_REDIS__TLS_PORT=6390` sets
`redis.tls_port`. Values are read as YAML scalars, so `REDKEEP_TLS__SERVER_NAMES='[a, b]'`
sets a list. Every problem is reported, each as `At 'path': message`. A few documented
REDKEEP_* variables are no settings (NOT_SETTINGS): the code that needs them reads them.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from redkeep.config.schema import Settings
from redkeep.errors import ConfigError

ENV_PREFIX = "REDKEEP_"
ENV_NESTING = "__"
# Documented REDKEEP_* variables that are read where they are needed, not settings: one of them
# set must not make every command refuse its configuration.
NOT_SETTINGS = frozenset(
    {
        "REDKEEP_SENTINEL_PASSWORD",  # the proxy's Sentinel password (proxy/config.py)
    }
)


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Return the effective settings: defaults, then the file at `path` (if any), then env.

    Raise ConfigError listing every problem if the YAML or any value is invalid.
    """
    environ = os.environ if environ is None else environ
    data = read_yaml(path) if path is not None else {}
    origins = apply_env_overrides(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        where = str(path) if path is not None else "configuration"
        problems = [format_problem(item, origins) for item in error.errors()]
        raise ConfigError(f"{where}: {len(problems)} invalid setting(s)", problems) from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse the YAML mapping at `path`; raise ConfigError with the line on a syntax error."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; create one with `redkeep init`") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Apply REDKEEP_* variables to `data` in place; return {dotted path: variable name}."""
    origins = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTING)]
        if not all(keys):
            continue
        target = data
        for key in keys[:-1]:
            child = target.get(key)
            if not isinstance(child, dict):
                child = target[key] = {}
            target = child
        target[keys[-1]] = yaml.safe_load(environ[name]) if environ[name] else ""
        origins[".".join(keys)] = name
    return origins


def format_problem(error: Mapping[str, Any], origins: Mapping[str, str]) -> str:
    """Format one pydantic error as `At 'a.b[0]': message (from ENV_VAR)`."""
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = error["msg"].removeprefix("Value error, ")
    origin = next((var for key, var in origins.items() if _within(path, key)), None)
    suffix = f" (from {origin})" if origin else ""
    location = f"At '{path}'" if path else "At top level"
    return f"{location}: {message}{suffix}"


def _within(path: str, key: str) -> bool:
    return path == key or path.startswith((f"{key}.", f"{key}["))
