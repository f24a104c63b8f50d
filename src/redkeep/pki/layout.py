"""Which file of a TLS directory is which (no cryptography needed to know)."""

from dataclasses import dataclass
from pathlib import Path

DEFAULT_CLIENT = "client"


@dataclass(frozen=True)
class TLSFiles:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    def client_cert(self, name: str = DEFAULT_CLIENT) -> Path:
        return self.directory / f"{name}.crt"

    def client_key(self, name: str = DEFAULT_CLIENT) -> Path:
        return self.directory / f"{name}.key"

    def node_cert(self, name: str) -> Path:
        """A node's own server certificate (sentinel and cluster deployments): it names the
        node (its compose service / pod) beside tls.server_names."""
        return self.directory / "nodes" / f"{name}.crt"

    def node_key(self, name: str) -> Path:
        return self.directory / "nodes" / f"{name}.key"

    def complete(self) -> bool:
        paths = [self.ca_cert, self.ca_key, self.server_cert, self.server_key]
        return all(path.exists() for path in [*paths, self.client_cert(), self.client_key()])
