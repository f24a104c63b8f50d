"""Running the proxy: event loop (uvloop when installed), signals, metrics endpoint."""

import asyncio
import logging
import resource
import signal
import ssl
from collections.abc import Callable
from functools import partial
from signal import SIGHUP

from redkeep import httpserver
from redkeep.errors import RedkeepError
from redkeep.proxy.accesslog import AccessLog
from redkeep.proxy.config import ProxyConfig, address_text
from redkeep.proxy.metrics import serve_metrics
from redkeep.proxy.server import Proxy
from redkeep.signals import stop_on_signals

log = logging.getLogger("redkeep.proxy")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when it is installed (a quarter less CPU per request), else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(load: Callable[[], ProxyConfig], say: Callable[[str], None]) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads. Configuration errors raise before."""
    config = load()
    raise_open_files_limit(config.policy.max_conns)
    access_log = AccessLog(config.access_log)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(_serve(config, load, access_log, say))
    finally:
        access_log.close()


async def _serve(
    config: ProxyConfig,
    load: Callable[[], ProxyConfig],
    access_log: AccessLog,
    say: Callable[[str], None],
) -> None:
    loop = asyncio.get_running_loop()
    proxy = Proxy(config, access_log)
    await proxy.start()
    metrics = None
    try:
        if config.metrics_listen:
            host, port = config.metrics_listen
            try:
                metrics = await serve_metrics(proxy, host, port)
            except OSError as error:
                raise RedkeepError(
                    f"the proxy cannot serve metrics on {host}:{port}: {error.strerror}"
                ) from None
        stop = asyncio.Event()
        stopping = (signal.SIGTERM, signal.SIGINT)
        reload = partial(_reload, proxy, load, access_log)
        with stop_on_signals(loop, stop.set, stopping), stop_on_signals(loop, reload, (SIGHUP,)):
            say(_banner(config, proxy.upstream, type(loop).__module__.split(".")[0]))
            await stop.wait()
    finally:
        if metrics is not None:
            metrics.close()
        await proxy.stop()


def raise_open_files_limit(max_conns: int) -> None:
    """Use the hard open-files limit (as Go programs do): each client costs two descriptors,
    and the soft limit (often 1024) would turn clients away long before max_conns."""
    soft = httpserver.raise_open_files_limit()
    needed = 2 * max_conns + 64
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "the open-files limit (%d) is below what max_conns %d needs (%d): raise it "
            "(LimitNOFILE=, ulimit -n) or lower max_conns",
            soft,
            max_conns,
            needed,
        )


def _reload(proxy: Proxy, load: Callable[[], ProxyConfig], access_log: AccessLog) -> None:
    try:
        config = load()
        if config.listen != proxy.config.listen:
            raise RedkeepError("the listen address cannot change on reload; restart the proxy")
        proxy.reload(config)
    except (RedkeepError, OSError, ssl.SSLError, ValueError) as error:
        proxy.counters.reload_failures += 1
        message = error.message if isinstance(error, RedkeepError) else str(error)
        log.error("reload refused, the previous policy stays: %s", message)
        return
    log.info("reloaded the policy (allow %s)", ", ".join(map(str, config.policy.allow)) or "all")
    try:  # after the policy: a log that cannot be reopened must not hold back certificates
        access_log.reopen()
    except OSError as error:
        proxy.counters.log_reopen_failures += 1
        log.error("cannot reopen the access log, still writing to the old file: %s", error)


def _banner(config: ProxyConfig, current: tuple[str, int] | None, loop_name: str) -> str:
    host, port = config.listen
    upstream = address_text(current) if current else "no primary yet"
    if config.sentinel is not None:
        sentinels = ", ".join(address_text(address) for address in config.sentinel.addresses)
        upstream = f"the primary of {config.sentinel.master_name} ({upstream}) per {sentinels}"
    upstream += " (TLS)" if config.upstream_tls else ""
    tls = "TLS" if config.client_tls else "plain TCP"
    if config.client_tls and config.client_tls.auth_clients == "yes":
        tls += ", client certificates required"
    mode = "command policy on" if config.policy.scans_requests else "pass-through"
    return f"redkeep proxy on {host}:{port} ({tls}, {mode}, {loop_name}) -> {upstream}"
