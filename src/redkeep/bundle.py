"""A deployment bundle: the directory `redkeep init` writes and the other commands act on.

Found through `--dir DIR`, or `redkeep.yaml` in the current directory (as docker compose finds
its file). Knows where each file lives and how to reach the bundle's Redis as each role. Paths
in redkeep.yaml are relative to the bundle: `resolve_path` is where they become real paths.
"""

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from redkeep.envfile import read_env
from redkeep.errors import UsageError
from redkeep.pki.layout import TLSFiles
from redkeep.redis.deployment import Deployment, Node, Role, Topology
from redkeep.redis.target import Target, parse_host_port
from redkeep.render.env import ALL_PASSWORD_KEYS

if TYPE_CHECKING:
    from redkeep.config.schema import Settings

CONFIG_NAME = "redkeep.yaml"


def resolve_path(value: str | Path | None, root: Path | None) -> Path | None:
    """A path from redkeep.yaml, or a flag that stands in for a setting: a relative one is
    relative to the bundle at `root` (to the working directory without a bundle)."""
    if value is None:
        return None
    path = Path(value)
    return root / path if root is not None and not path.is_absolute() else path


@dataclass
class Bundle:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def env_path(self) -> Path:
        return self.root / ".env"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def acl_path(self) -> Path:
        return self.redis_dir / "users.acl"

    def node_dir(self, name: str) -> Path:
        """A node's own files in a sentinel or cluster bundle: redis.conf and users.acl (each
        node saves its own ACL file; a shared one would race), or a Sentinel's sentinel.conf."""
        return self.redis_dir / "nodes" / name

    def node_data_dir(self, name: str) -> Path:
        return self.data_dir / name

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def backup_key_path(self) -> Path:
        return self.root / "keys" / "backup.key"

    @property
    def tls(self) -> TLSFiles:
        return TLSFiles(self.root / "tls")

    def path(self, value: str | Path) -> Path:
        """A path setting of this bundle's redkeep.yaml, resolved against the bundle."""
        return resolve_path(value, self.root)

    def exists(self) -> bool:
        return self.config_path.is_file()

    @cached_property
    def settings(self) -> "Settings":
        from redkeep.config.load import load_settings  # noqa: PLC0415 - pydantic loads slowly

        return load_settings(self.config_path)

    def secrets(self) -> dict[str, str]:
        """The bundle's `.env` values (read fresh: rotation changes them)."""
        return read_env(self.env_path)

    def password(self, role: str) -> str:
        key = ALL_PASSWORD_KEYS[role]
        value = self.secrets().get(key)
        if not value:
            raise UsageError(
                f"{self.env_path}: {key} is missing; restore .env from your secret store, or "
                f"run `redkeep init {self.root} --force` to add a new password (old ones stay "
                "valid until `redkeep users finish-rotation`)"
            )
        return value

    def known_passwords(self) -> dict[str, str]:
        """{ACL user: password} for the users whose password is in .env."""
        secrets = self.secrets()
        return {user: secrets[key] for user, key in ALL_PASSWORD_KEYS.items() if secrets.get(key)}

    def secret_files(self) -> list[Path]:
        """Files that hold secrets (or hashes of them) and must be private to the owner: for a
        sentinel or cluster deployment also each node's files (the replication and Sentinel
        passwords, ACL hashes) and each node's key."""
        keys = [*sorted(self.tls.directory.glob("*.key")), self.backup_key_path]
        nodes = [*sorted((self.redis_dir / "nodes").glob("*/*")),
                 *sorted(self.tls.directory.glob("nodes/*.key"))]  # fmt: skip
        return [self.env_path, self.acl_path, *keys, *nodes]

    def deployment(self, role: str, with_password: bool = True) -> Deployment:
        """The bundle's servers as `redkeep up` runs them, each reached as `role`: TLS, its
        CA, the bundle client cert. Roles are the initial ones (after a failover, ask the
        Sentinels or the cluster: `Deployment` callers do)."""
        from redkeep.config.deployment import plan_nodes  # noqa: PLC0415 - with the settings

        settings = self.settings
        password = self.password(role) if with_password else None
        nodes = []
        for planned in plan_nodes(settings.deployment, settings.redis.tls_port):
            # In a container (the compose view) each node is its own service; in Kubernetes
            # its own pod (node_addresses).
            host = planned.name if settings.deployment.nodes_by_name else settings.host
            port = planned.port
            address = settings.deployment.node_addresses.get(planned.name)
            if address:
                host, port = parse_host_port(address)
            target = Target(
                "rediss",
                host=host,
                port=port,
                username=role,
                password=password,
                password_source=f"{self.env_path}" if with_password else "",
                tls_ca=self.tls.ca_cert,
                tls_cert=self.tls.client_cert(),
                tls_key=self.tls.client_key(),
            )
            nodes.append(Node(planned.name, Role(planned.role), target, shard=str(planned.shard)))
        return Deployment(Topology(settings.deployment.topology), tuple(nodes))

    def target(self, role: str, with_password: bool = True) -> Target:
        """How to reach the bundle's primary as `role`."""
        return self.deployment(role, with_password).primary().target


def find_bundle(directory: Path | None, required: bool = True) -> Bundle | None:
    """Return the bundle at `directory` or, without one, in the current directory.

    Raise UsageError if `directory` holds no bundle, or if none is found and one is required.
    """
    if directory is not None:
        bundle = Bundle(directory)
        if not bundle.exists():
            raise UsageError(
                f"{directory}: no {CONFIG_NAME} there; create a bundle with "
                f"`redkeep init {directory}`"
            )
        return bundle
    here = Bundle(Path(os.getcwd()))
    if here.exists():
        return here
    if required:
        raise UsageError(
            f"no {CONFIG_NAME} in the current directory; pass --dir DIR or run "
            "`redkeep init DIR` first"
        )
    return None
