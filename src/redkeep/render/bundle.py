"""The files of a bundle, as data: path, text and mode. `actions.init` writes them."""

from dataclasses import dataclass

from redkeep import __version__
from redkeep.config.sample import render_sample
from redkeep.config.schema import Settings
from redkeep.envfile import render_env
from redkeep.fsutil import PUBLIC_MODE, SECRET_MODE
from redkeep.render import templates
from redkeep.render.acl import render_acl
from redkeep.render.env import ENV_HEADER, EXAMPLE_HEADER, env_values, example_values
from redkeep.render.redis_conf import (
    CONTAINER_BIND,
    CONTAINER_PATHS,
    image_version,
    render_redis_conf,
)


@dataclass(frozen=True)
class BundleFile:
    path: str  # relative to the bundle root
    content: str
    mode: int


def render_compose(settings: Settings, uid: int, gid: int) -> str:
    """docker-compose.yml: the redis service, TLS port only, health check over TLS + ACL."""
    return (
        templates()
        .get_template("docker-compose.yml.j2")
        .render(
            name=settings.name,
            version=__version__,
            redis=settings.redis,
            publish_address=settings.docker.publish_address,
            uid=uid,
            gid=gid,
        )
    )


def bundle_files(
    settings: Settings,
    passwords: dict[str, str],
    uid: int,
    gid: int,
    kept_hashes: dict[str, list[str]] | None = None,
) -> list[BundleFile]:
    """Every generated file of a bundle except the certificates, redkeep.yaml last.

    redkeep.yaml marks a bundle as complete, so it is written only after all the others.
    """
    container_conf = render_redis_conf(
        settings,
        CONTAINER_PATHS,
        image_version(settings.redis.image),
        CONTAINER_BIND,
        target=f"container {settings.redis.image}",
    )
    name = settings.name
    return [
        BundleFile("redis/redis.conf", container_conf, PUBLIC_MODE),
        BundleFile("redis/users.acl", render_acl(settings, passwords, kept_hashes), SECRET_MODE),
        BundleFile("docker-compose.yml", render_compose(settings, uid, gid), PUBLIC_MODE),
        BundleFile(
            ".env",
            render_env(ENV_HEADER.format(name=name), env_values(settings, passwords)),
            SECRET_MODE,
        ),
        BundleFile(
            ".env.example", render_env(EXAMPLE_HEADER, example_values(settings)), PUBLIC_MODE
        ),
        BundleFile("redkeep.yaml", render_sample(settings), PUBLIC_MODE),
    ]
