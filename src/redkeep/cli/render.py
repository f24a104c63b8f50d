"""`redkeep render`: alternative artifacts from the same configuration."""

import sys
from pathlib import Path

import click

from redkeep.app import Application
from redkeep.cli.options import dir_option
from redkeep.cli.proxy import proxy_loader, proxy_options
from redkeep.fsutil import atomic_write
from redkeep.render.nginx import STREAM_MODULE, render_nginx


@click.group(name="render")
def render_group() -> None:
    """Render alternative artifacts, such as an nginx stream config."""


@render_group.command()
@dir_option
@proxy_options
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write here.")
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/var/log/nginx"),
    show_default=True,
    help="Where nginx writes its access and error logs.",
)
@click.option(
    "--pid-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("/run/nginx-redkeep.pid"),
    show_default=True,
)
@click.option(
    "--stream-module",
    default=STREAM_MODULE,
    show_default=True,
    help="The dynamic stream module to load; 'none' when nginx has it built in.",
)
@click.pass_obj
def nginx(
    app: Application,
    directory: Path | None,
    overrides: dict,
    out: Path | None,
    log_dir: Path,
    pid_file: Path,
    stream_module: str,
) -> None:
    """The nginx `stream` config equivalent to the proxy configuration (same flags).

    The file lists what nginx cannot enforce (command policy, command and connection rates,
    metrics). Validate it with `nginx -t -c FILE`.
    """
    config = proxy_loader(app, directory, overrides)()
    text = render_nginx(
        config,
        self_path=str(out.resolve()) if out else "redis-stream.conf",
        log_dir=log_dir.resolve(),
        pid_file=pid_file.resolve(),
        stream_module=None if stream_module == "none" else stream_module,
    )
    if out is None:
        sys.stdout.write(text)
        return
    atomic_write(out, text)
    app.say(f"wrote {out}")
