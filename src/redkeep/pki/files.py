"""The TLS directory of a bundle: which file is which, and writing them safely.

Layout: ca.crt ca.key server.crt server.key client.crt client.key, plus NAME.crt/NAME.key
for each `certs issue NAME`. Keys are written 0600 and the directory is 0700.
"""

import datetime as dt
from pathlib import Path

from cryptography import x509

from redkeep.errors import UsageError
from redkeep.fsutil import PUBLIC_MODE, SECRET_MODE, atomic_write, ensure_private_dir
from redkeep.pki import issue
from redkeep.pki.inspect import load_certificate, load_private_key
from redkeep.pki.layout import DEFAULT_CLIENT, TLSFiles

__all__ = [
    "DEFAULT_CLIENT",
    "TLSFiles",
    "init_tls",
    "issue_client",
    "issue_node",
    "load_ca",
    "node_names",
    "write_pair",
]


def load_ca(files: TLSFiles) -> tuple[x509.Certificate, issue.PrivateKey]:
    """The CA certificate and key; raise UsageError if the key is not there."""
    if not files.ca_key.exists():
        raise UsageError(
            f"{files.ca_key}: CA key not found; it is needed to sign certificates "
            "(restore it, or create a new CA with `redkeep certs init`)"
        )
    return load_certificate(files.ca_cert), load_private_key(files.ca_key)


def write_pair(cert_path: Path, key_path: Path, cert, key) -> None:
    """Write a key (0600) then its certificate (0644), each atomically."""
    atomic_write(key_path, issue.key_pem(key), SECRET_MODE)
    atomic_write(cert_path, issue.cert_pem(cert), PUBLIC_MODE)


def init_tls(
    files: TLSFiles,
    name: str,
    server_names: list[str],
    key_type: issue.KeyType,
    ca_days: int,
    cert_days: int,
    now: dt.datetime,
) -> None:
    """Create a CA, a server certificate for `server_names` and the default client certificate."""
    ensure_private_dir(files.directory)
    ca_cert, ca_key = issue.make_ca(f"{name} Redis CA", key_type, ca_days, now)
    server = issue.make_server_cert(ca_cert, ca_key, server_names, key_type, cert_days, now)
    client = issue.make_client_cert(
        ca_cert, ca_key, f"{name}-{DEFAULT_CLIENT}", key_type, cert_days, now
    )
    write_pair(files.ca_cert, files.ca_key, ca_cert, ca_key)
    write_pair(files.server_cert, files.server_key, *server)
    write_pair(files.client_cert(), files.client_key(), *client)


def issue_client(
    files: TLSFiles, name: str, key_type: issue.KeyType, days: int, now: dt.datetime
) -> tuple[Path, Path]:
    """Issue another client certificate NAME.crt/NAME.key; refuse to overwrite one."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"certificate name '{name}': use letters, digits, '-' and '_' only")
    if name in ("ca", "server"):
        raise UsageError(f"certificate name '{name}' is reserved; choose another")
    cert_path, key_path = files.client_cert(name), files.client_key(name)
    if cert_path.exists() or key_path.exists():
        raise UsageError(f"{cert_path} already exists; choose another name or delete it first")
    ca_cert, ca_key = load_ca(files)
    cert, key = issue.make_client_cert(ca_cert, ca_key, name, key_type, days, now)
    write_pair(cert_path, key_path, cert, key)
    return cert_path, key_path


def node_names(node: str, server_names: list[str]) -> list[str]:
    """What a node's certificate names: the node first (its compose service or pod name, what
    peers dial), then the names clients use."""
    return [node, *[name for name in server_names if name != node]]


def issue_node(
    files: TLSFiles,
    node: str,
    server_names: list[str],
    key_type: issue.KeyType,
    days: int,
    now: dt.datetime,
) -> tuple[Path, Path]:
    """Issue (or renew) the server certificate of one node of a sentinel or cluster deployment,
    tls/nodes/NODE.crt and .key, signed by the bundle's CA."""
    ca_cert, ca_key = load_ca(files)
    cert, key = issue.make_server_cert(
        ca_cert, ca_key, node_names(node, server_names), key_type, days, now
    )
    ensure_private_dir(files.node_cert(node).parent)
    write_pair(files.node_cert(node), files.node_key(node), cert, key)
    return files.node_cert(node), files.node_key(node)
