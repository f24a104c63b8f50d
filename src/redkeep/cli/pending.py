"""Command groups of the contract that later releases fill: they say so and exit 2."""

import click

from redkeep.errors import NotAvailableYet

PLANNED = {
    "audit": "the security audit of a live Redis",
}


def _placeholder(name: str, what: str) -> click.Command:
    @click.command(
        name=name,
        help=f"{what[0].upper()}{what[1:]}. Not available yet in this release.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def command() -> None:
        raise NotAvailableYet(f"`redkeep {name}` ({what}) is not available yet in this release")

    return command


COMMANDS = [_placeholder(name, what) for name, what in PLANNED.items()]
