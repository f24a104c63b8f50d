"""The `redkeep` command: the root group, error handling and exit statuses.

Each command group lives in its own module; commands parse arguments, call an action and
render its result through the Application. Errors become one line on stderr and an exit
status (0 ok, 1 failure, 2 usage or configuration, 3 cannot connect or log in; README "Exit
codes"); `--debug` adds the traceback.
"""

import importlib
import sys
from collections.abc import Sequence

import click

from redkeep import __version__
from redkeep.app import Application, visible
from redkeep.errors import ConfigError, ExitStatus, RedkeepError
from redkeep.signals import interrupted_by_signals

# Command -> "module:attribute" under redkeep.cli. A command's module (and what it needs:
# redis-py, cryptography, pydantic ...) is imported only when that command runs.
COMMANDS = {
    "init": "stack:init",
    "up": "stack:up",
    "down": "stack:down",
    "status": "stack:status",
    "health": "health:health",
    "certs": "certs:certs_group",
    "users": "users:users_group",
    "backup": "backup:backup_group",
    "config": "config:config_group",
    "exporter": "exporter:exporter",
    "proxy": "proxy:proxy",
    "render": "render:render_group",
    "audit": "audit:audit",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*COMMANDS, *super().list_commands(ctx)])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, _, attribute = COMMANDS[name].partition(":")
            return getattr(importlib.import_module(f"redkeep.cli.{module}"), attribute)
        return super().get_command(ctx, name)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="redkeep")
@click.option("--debug", is_flag=True, help="Show a traceback when something fails.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Make Redis production-ready and keep it that way.

    Start with `redkeep up`: it creates a hardened bundle (ACL users, TLS, generated secrets)
    in ./redkeep-stack and runs it. Every command has --help.
    """
    ctx.obj = Application(debug=debug)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI and exit with its status; print errors as one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    sys.exit(run(args))


def run(args: list[str]) -> int:
    """Run the CLI with `args` and return the exit status (never raises, never exits)."""
    debug = "--debug" in args
    try:
        # SIGTERM and SIGHUP unwind like Ctrl-C: settings put back, temp files removed.
        with interrupted_by_signals():
            result = cli.main(args=args, prog_name="redkeep", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return ExitStatus.USAGE
    except (click.Abort, KeyboardInterrupt):
        print("redkeep: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except RedkeepError as error:
        if debug:
            _print_traceback()
        report(error)
        return error.status
    except OSError as error:  # a file or directory we cannot use: name it
        if debug:
            _print_traceback()
        where = f"{error.filename}: " if error.filename else ""
        print(visible(f"redkeep: error: {where}{error.strerror or error}"), file=sys.stderr)
        return ExitStatus.FAILURE
    except Exception as error:  # the last line of defence: one line, no traceback by default
        if debug:
            _print_traceback()
        hint = "" if debug else " (run with --debug for a traceback)"
        print(visible(f"redkeep: error: {type(error).__name__}: {error}{hint}"), file=sys.stderr)
        return ExitStatus.FAILURE
    return int(result) if isinstance(result, int) else ExitStatus.OK


def report(error: RedkeepError) -> None:
    print(f"redkeep: error: {visible(error.message)}", file=sys.stderr)
    if isinstance(error, ConfigError):
        for problem in error.problems:
            print(f"  {visible(problem)}", file=sys.stderr)


def _print_traceback() -> None:
    """--debug's traceback; `traceback` (linecache, tokenize) loads only then."""
    import traceback  # noqa: PLC0415

    traceback.print_exc()
