"""`redkeep config`: validate, sample, show."""

from pathlib import Path

import click
import yaml

from redkeep.app import Application
from redkeep.cli.options import dir_option, json_option, load_bundle
from redkeep.config.load import load_settings
from redkeep.config.sample import render_sample
from redkeep.envfile import read_env
from redkeep.redis.target import mask_url

REDACTED = "********"


@click.group(name="config")
def config_group() -> None:
    """Check and explain redkeep.yaml."""


@config_group.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def validate(app: Application, file: Path) -> None:
    """Check FILE against the schema; report every problem with its path (exit 2 if any)."""
    load_settings(file)
    app.say(f"{file}: valid")


@config_group.command()
@click.pass_obj
def sample(app: Application) -> None:
    """Print a commented redkeep.yaml with every setting and its default."""
    app.write(render_sample())


@config_group.command()
@dir_option
@json_option
@click.pass_obj
def show(app: Application, directory: Path | None, as_json: bool) -> None:
    """Print the effective configuration (file + environment), secrets redacted."""
    app.json_mode = as_json
    bundle = load_bundle(app, directory)
    effective = bundle.settings.model_dump(mode="json")
    effective["secrets"] = redacted_secrets(read_env(bundle.env_path))
    if as_json:
        app.emit_json(effective)
    else:
        app.write(f"# effective configuration of {bundle.root}\n")
        app.write(yaml.safe_dump(effective, sort_keys=False))


def redacted_secrets(values: dict[str, str]) -> dict[str, str]:
    """Every .env key with its value hidden: passwords redacted, URLs with the password masked."""
    shown = {}
    for key, value in values.items():
        if "://" in value:
            shown[key] = mask_url(value)
        else:
            shown[key] = REDACTED if value else "(empty)"
    return shown
