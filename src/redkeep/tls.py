"""The TLS client context for raw sockets (replication capture, handshake probes).

redis-py builds its own context from the same inputs (`connect.client_for`); this one is for
the places that speak to Redis without redis-py.
"""

import ssl
import warnings
from pathlib import Path


def client_context(
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ciphers: str | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client context: verifies the server against `ca` (or the system store) and its name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with warnings.catch_warnings():
        # Offering TLS 1.0/1.1 is deliberate when probing whether a server refuses them.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = min_version
        context.maximum_version = max_version
    if ciphers:
        context.set_ciphers(ciphers)
    if verify:
        if ca:
            context.load_verify_locations(cafile=str(ca))
        else:
            context.load_default_certs()
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    return context
