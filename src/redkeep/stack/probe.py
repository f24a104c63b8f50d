"""Does a service answer, asked the way its users ask it, within a short time?

A TCP connect proves nothing: the kernel completes it from the listen backlog even when the
process is stopped (SIGSTOP) or its event loop hangs. So a probe sends a request and waits
for the answer: an HTTP GET, or a Redis PING. No secret is sent, so the server's certificate
is not checked (a liveness probe of the bundle's own process on this machine).
"""

import http.client
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class Answer:
    answering: bool
    detail: str  # what it answered, or why there was no answer
    status: int | None = None  # an HTTP answer's status ...
    body: bytes = b""  # ... and body


def http_get(host: str, port: int, path: str, tls: bool, timeout: float = PROBE_TIMEOUT) -> Answer:
    """GET `path`; any HTTP answer (401 and 503 too) shows that the process serves."""
    request = f"GET {path}"
    if tls:
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=_unverified()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
    except TimeoutError:
        return Answer(False, f"no answer to {request} within {timeout:g}s")
    except (OSError, http.client.HTTPException) as error:
        return Answer(False, f"{request} failed: {_reason(error)}")
    finally:
        connection.close()
    return Answer(True, f"HTTP {response.status} to {request}", response.status, body)


def redis_ping(
    host: str,
    port: int,
    client_pair: tuple[Path, Path] | None,
    timeout: float = PROBE_TIMEOUT,
) -> Answer:
    """PING (without logging in: a NOAUTH error is an answer too), over TLS with the client
    certificate and key `client_pair` when given."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if client_pair is None:
                reply = _ping(raw)
            else:
                context = _unverified()
                context.load_cert_chain(*map(str, client_pair))
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    reply = _ping(tls)
    except TimeoutError:
        return Answer(False, f"no answer to PING within {timeout:g}s")
    except OSError as error:
        return Answer(False, f"PING failed: {_reason(error)}")
    if not reply.startswith((b"+", b"-")):
        return Answer(False, "the connection was closed without an answer to PING")
    return Answer(True, f"PING answered {reply.splitlines()[0].decode(errors='replace')[:60]}")


def _ping(sock: socket.socket) -> bytes:
    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
    return sock.recv(512)


def _unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # liveness only: nothing secret is sent
    return context


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


def connect_host(listen: str) -> tuple[str, int]:
    """Where to reach a service listening on HOST:PORT from this machine (a wildcard address
    is reached on loopback)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return host, int(port)
