"""One raw TLS handshake with a server: which certificate it serves, which version it agrees.

Used to prove a rotated certificate is live, and to test which protocol versions a server
accepts. Apart from one unauthenticated PING (see `_await_refusal`), no command is sent.
The context is the one every path uses (`tls.client_context`).
"""

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from redkeep.redis.tls import client_context


@dataclass(frozen=True)
class Handshake:
    ok: bool
    version: str = ""
    certificate: x509.Certificate | None = None
    error: str = ""
    refused: bool = False  # the server ended the handshake: an alert, or the wrong version


def handshake(
    host: str,
    port: int,
    *,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    server_name: str | None = None,
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ciphers: str | None = None,
    verify: bool = True,
    timeout: float = 5.0,
) -> Handshake:
    """Complete a TLS handshake with host:port and return what the server presented.

    With TLS 1.3 a server that wants a client certificate may refuse only after the handshake,
    so one read is attempted: a refusal then shows as an error too.
    """
    context = client_context(
        ca,
        cert,
        key,
        min_version=min_version,
        max_version=max_version,
        ciphers=ciphers,
        verify=verify,
    )
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name or host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            version = tls.version() or ""
            _await_refusal(tls)
            peer = x509.load_der_x509_certificate(der) if der else None
            return Handshake(True, version=version, certificate=peer)
    except (OSError, ssl.SSLError) as error:
        reason = str(getattr(error, "reason", None) or error)
        return Handshake(False, error=reason, refused=_refused(reason))


def _refused(reason: str) -> bool:
    """Did the server say no (OpenSSL's reason for an alert or a version it will not speak),
    rather than the handshake not happening at all?"""
    reason = reason.lower()
    return "alert" in reason or "wrong version" in reason or "unsupported protocol" in reason


def _await_refusal(tls: ssl.SSLSocket) -> None:
    """Send PING and read the answer: a TLS 1.3 server's late refusal raises here."""
    tls.sendall(b"*1\r\n$4\r\nPING\r\n")
    tls.recv(64)
