"""Whether Redis makes a new connection log in: the pre-AUTH caps follow the answer.

Redis limits requests (10 arguments, 16 KiB each) only for a client that has not logged in,
and a client of a server whose default user has no password is logged in from its first byte.
So the proxy asks Redis the way an anonymous client would (PING on a fresh connection, with
the proxy's own TLS) and applies the caps only when the answer is NOAUTH. Asked at start, on
reload and every PROBE_INTERVAL seconds; an unanswered probe keeps the last answer.
"""

import asyncio
import logging
import ssl

log = logging.getLogger("redkeep.proxy")

PROBE_INTERVAL = 15.0  # seconds between probes once Redis has answered one
RETRY_INTERVAL = 2.0  # ... while no probe has been answered yet
PING = b"*1\r\n$4\r\nPING\r\n"


async def requires_auth(
    upstream: tuple[str, int],
    server_name: str | None,
    timeout: float,
    context: ssl.SSLContext | None,
) -> bool | None:
    """True when Redis answers an anonymous PING with NOAUTH, False when it answers it
    otherwise (PONG), None when it could not be asked."""
    host, port = upstream
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=(server_name or host) if context else None
            )
            writer.write(PING)
            reply = await reader.readline()
    except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as error:
        log.debug("cannot ask %s:%s whether it needs AUTH: %s", host, port, error)
        return None
    finally:
        if writer is not None:
            writer.close()
    if not reply:
        return None
    return reply.startswith(b"-NOAUTH")


def describe(required: bool | None, upstream: tuple[str, int]) -> str:
    where = f"{upstream[0]}:{upstream[1]}"
    if required is None:
        return f"Redis at {where} did not answer yet: pre-AUTH caps off until it does"
    if required:
        return f"Redis at {where} requires AUTH: pre-AUTH caps apply until a client logs in"
    return f"Redis at {where} lets clients in without a password: no pre-AUTH caps"
