"""`redkeep render`: alternative artifacts from the same configuration."""

import sys
from pathlib import Path

import click

from redkeep import __version__
from redkeep.app import Application
from redkeep.cli.options import dir_option, load_bundle
from redkeep.cli.proxy import proxy_loader, proxy_options
from redkeep.errors import UsageError
from redkeep.fsutil import atomic_write
from redkeep.render.nginx import STREAM_MODULE, render_nginx


@click.group(name="render")
def render_group() -> None:
    """Render alternative artifacts: an nginx stream config, Kubernetes manifests."""


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
    if config.sentinel is not None:
        raise UsageError(
            "nginx cannot follow a Sentinel failover (it connects to fixed addresses and never "
            "asks Sentinel): run `redkeep proxy`, which does, or pass --upstream HOST:PORT to "
            "render a config for one server"
        )
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


@render_group.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the manifests here (default: DIR/k8s).",
)
@click.option("--namespace", help="The namespace to deploy into (default: the bundle's name).")
@click.option(
    "--cluster-domain",
    default="cluster.local",
    show_default=True,
    help="The cluster's DNS domain (pods' names end in it).",
)
@click.option(
    "--image",
    help=f"The redkeep image for the proxy and exporter, built from DIR/image/ and pushed "
    f"where the cluster pulls from (default redkeep:{__version__}).",
)
@click.option("--storage-class", help="StorageClass of the data volumes (default: the cluster's).")
@click.pass_obj
def k8s(
    app: Application,
    directory: Path | None,
    out: Path | None,
    namespace: str | None,
    cluster_domain: str,
    image: str | None,
    storage_class: str | None,
) -> None:
    """Kubernetes manifests of the bundle's deployment (standalone, sentinel or cluster).

    Writes namespace.yaml, deployment.yaml and, apart, secrets.yaml (mode 0600): apply them
    in that order, the secrets through your secret store. Validated offline only; see
    docs/kubernetes.md.
    """
    # Only this command needs the bundle's settings and the PKI: `render nginx` stays light.
    from redkeep.actions.k8s import (  # noqa: PLC0415
        MANIFESTS_FILE,
        NAMESPACE_FILE,
        SECRETS_FILE,
        render_k8s,
    )
    from redkeep.render.k8s import K8sOptions  # noqa: PLC0415

    bundle = load_bundle(app, directory)
    options = K8sOptions(
        namespace=namespace or bundle.settings.name,
        domain=cluster_domain,
        image=image or f"redkeep:{__version__}",
        storage_class=storage_class,
    )
    report = render_k8s(bundle, out or bundle.root / "k8s", options)
    app.say(
        f"wrote {', '.join(report.written)} into {report.out} "
        f"({report.topology}, namespace {report.namespace})"
    )
    for note in report.notes:
        app.say(f"note: {note}")
    app.say(
        f"apply: kubectl apply -f {report.out / NAMESPACE_FILE}; {report.out / SECRETS_FILE} "
        f"through your secret store; kubectl apply -f {report.out / MANIFESTS_FILE}"
    )
