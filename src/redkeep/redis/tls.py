"""The one TLS client context: raw connections, handshake probes, redis-py and the proxy.

`client_context` builds it from files and knobs; `context_for` is the same for a Target, with a
missing or unreadable file named in one line instead of showing up as a failed handshake.
"""

import ssl
import warnings
from pathlib import Path

from redkeep.errors import UsageError
from redkeep.redis.target import Target


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


def context_for(target: Target) -> ssl.SSLContext:
    """The client context for a rediss:// `target`; raise UsageError naming a bad file."""
    if bool(target.tls_cert) != bool(target.tls_key):
        raise UsageError("a TLS client certificate needs its key: pass both or neither")
    files = (
        ("CA file", target.tls_ca),
        ("client certificate", target.tls_cert),
        ("client key", target.tls_key),
    )
    for what, path in files:
        if path is not None and not path.is_file():
            raise UsageError(f"TLS {what} {path}: not a readable file")
    try:
        context = client_context(target.tls_ca)
    except ssl.SSLError:
        raise UsageError(f"TLS CA file {target.tls_ca}: not a PEM certificate") from None
    if target.tls_cert is not None and target.tls_key is not None:
        # Loaded here rather than by client_context, to say which file is wrong.
        try:
            context.load_cert_chain(str(target.tls_cert), str(target.tls_key))
        except ssl.SSLError as error:
            detail = (
                "the key does not belong to it"
                if error.reason == "KEY_VALUES_MISMATCH"
                else "not PEM, or the key is encrypted"
            )
            raise UsageError(
                f"TLS client certificate {target.tls_cert} (key {target.tls_key}): {detail}"
            ) from None
    return context
