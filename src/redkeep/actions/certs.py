"""`redkeep certs`: create, issue, show, verify, and rotate the served certificates live.

A standalone bundle serves tls/server.crt (Redis, and the proxy). A sentinel or cluster bundle
gives each node its own certificate, tls/nodes/NAME.crt: a rotation renews each one, makes
each data node re-read its own and restarts, one at a time, the Sentinels this machine's
`redkeep up` runs (`rotate_nodes`).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import redis
from cryptography import x509

from redkeep.actions.locate import load_bundle, target_for
from redkeep.actions.nodes import every_node, is_standalone
from redkeep.app import Application
from redkeep.bundle import CONFIG_NAME, Bundle
from redkeep.config.deployment import plan_nodes
from redkeep.config.load import load_settings
from redkeep.config.schema import Settings
from redkeep.errors import RedkeepError, UsageError
from redkeep.fsutil import PUBLIC_MODE, SECRET_MODE, atomic_write
from redkeep.pki import issue
from redkeep.pki.files import TLSFiles, init_tls, issue_client, issue_node, load_ca, write_pair
from redkeep.pki.inspect import (
    CertInfo,
    describe,
    key_matches,
    load_certificate,
    load_private_key,
    verify_certificate,
)
from redkeep.redis.client import explain_failure, session
from redkeep.redis.deployment import Node, Role
from redkeep.redis.handshake import handshake
from redkeep.redis.target import ConnectionOptions, Target, parse_host_port
from redkeep.stack import processes
from redkeep.stack.lock import stack_lock
from redkeep.stack.processes import PROXY


@dataclass(frozen=True)
class CertsRequest:
    """The flags that say which certificates: FILES (else the bundle's), --ca, --dir."""

    files: tuple[Path, ...] = ()
    ca_path: Path | None = None
    directory: Path | None = None


@dataclass(frozen=True)
class CreatedPKI:
    directory: Path
    server_names: list[str]
    key_type: str


def run_init(directory: Path, force: bool) -> CreatedPKI:
    """`certs init DIRECTORY`: a CA, server and client certificate, as DIRECTORY/redkeep.yaml
    (when there is one) says."""
    config = directory / CONFIG_NAME
    settings = load_settings(config if config.exists() else None)
    files = TLSFiles(directory / "tls")
    init_certificates(files, settings, force, _now())
    return CreatedPKI(files.directory, settings.tls.server_names, settings.tls.key_type)


def run_issue(
    app: Application, name: str, directory: Path | None, days: int | None
) -> tuple[Path, Path]:
    """Another client certificate NAME from the bundle's CA: its certificate and key files."""
    bundle = load_bundle(app, directory)
    tls = bundle.settings.tls
    return issue_client(bundle.tls, name, tls.key_type, days or tls.cert_days, _now())


def run_show(app: Application, request: CertsRequest) -> list[CertInfo]:
    paths = list(request.files) or certificate_files(load_bundle(app, request.directory).tls, [])
    return show(paths, _now())


def run_verify(app: Application, request: CertsRequest) -> list[Verdict]:
    """Verify FILES against --ca; without either, the bundle's certificates and CA."""
    files, ca_path = request.files, request.ca_path
    bundle = None if (files and ca_path) else load_bundle(app, request.directory)
    paths = list(files) or certificate_files(bundle.tls, [])
    return verify(paths, ca_path or bundle.tls.ca_cert, _now())


def run_rotate(
    app: Application, connection: ConnectionOptions, directory: Path | None
) -> RotationReport | NodesRotationReport:
    """Rotate the bundle's server certificate (each node's, in a sentinel or cluster bundle),
    talking to its Redis as admin."""
    bundle = load_bundle(app, directory)
    if not is_standalone(bundle):
        return rotate_nodes(bundle, every_node(bundle, connection, "admin"), _now())
    target = target_for(connection, bundle, "admin")
    with session(target) as client:
        return rotate_server(bundle, client, target, _now())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def init_certificates(files: TLSFiles, settings: Settings, force: bool, now: dt.datetime) -> None:
    """Create a new CA, server and client certificate in `files.directory`.

    Raise UsageError if a CA key is there already and `force` is not set: replacing a CA
    makes every certificate it issued untrusted.
    """
    if files.ca_key.exists() and not force:
        raise UsageError(
            f"{files.ca_key} exists; a new CA would invalidate every certificate it issued. "
            "Pass --force to replace it anyway"
        )
    tls = settings.tls
    init_tls(files, settings.name, tls.server_names, tls.key_type, tls.ca_days, tls.cert_days, now)


def certificate_files(files: TLSFiles, paths: list[Path]) -> list[Path]:
    """The certificates to look at: `paths`, or every *.crt of the TLS directory."""
    if paths:
        return paths
    found = sorted(files.directory.glob("*.crt"))
    if not found:
        raise UsageError(
            f"{files.directory}: no certificates; create them with `redkeep certs init`"
        )
    return found


def show(paths: list[Path], now: dt.datetime) -> list[CertInfo]:
    return [describe(load_certificate(path), str(path), now) for path in paths]


@dataclass(frozen=True)
class Verdict:
    path: str
    ok: bool
    problems: list[str]

    def to_json(self) -> dict:
        return asdict(self)


def verify(paths: list[Path], ca_path: Path, now: dt.datetime) -> list[Verdict]:
    """Check each certificate against the CA, and against its key file when one is beside it."""
    ca = load_certificate(ca_path)
    verdicts = []
    for path in paths:
        cert = load_certificate(path)
        problems = verify_certificate(cert, ca, now)
        key_path = path.with_suffix(".key")
        if key_path.exists() and not key_matches(cert, load_private_key(key_path)):
            problems.append(f"{key_path.name} is not the key of this certificate")
        verdicts.append(Verdict(str(path), not problems, problems))
    return verdicts


@dataclass(frozen=True)
class Endpoint:
    """A TLS port of the bundle that serves the server certificate."""

    name: str  # "redis", "proxy"
    host: str  # where to connect
    port: int
    server_name: str  # the name to check in its certificate

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class EndpointResult:
    """What one endpoint serves after the rotation."""

    name: str
    address: str
    applied: str  # how it was told: "CONFIG SET", "SIGHUP to pid N", or why it was not
    serial: str | None  # the serial it serves now (None: no handshake)
    current: bool  # it serves the new certificate
    problem: str = ""


@dataclass(frozen=True)
class RotationReport:
    old_serial: str
    new_serial: str
    not_after: str
    paths: tuple[str, str]
    endpoints: list[EndpointResult]

    @property
    def complete(self) -> bool:
        """Every endpoint serves the new certificate (or is not running, so serves none)."""
        return not any(result.problem for result in self.endpoints)

    def to_json(self) -> dict:
        return {**asdict(self), "complete": self.complete}


VERIFY_TIMEOUT = 10.0  # for a reload to show in a handshake (the proxy reloads on SIGHUP)


def tls_endpoints(bundle: Bundle, target: Target) -> list[Endpoint]:
    """Every TLS port of the bundle that serves tls/server.crt: Redis, and the proxy when it
    terminates TLS with the bundle's certificate."""
    endpoints = [Endpoint("redis", target.host, target.port, target.host)]
    proxy = bundle.settings.proxy
    if proxy.enabled and proxy.tls and _same_file(bundle, proxy.tls_cert, bundle.tls.server_cert):
        host, port = parse_host_port(proxy.listen, "proxy.listen")
        endpoints.append(Endpoint("proxy", LOOPBACK.get(host, host), port, bundle.settings.host))
    return endpoints


# Listening on every address: ask on loopback.
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104
NOT_SIGNALLED = "not signalled"
CONFIG_SET = "CONFIG SET"
# Sentinel mode has no CONFIG command at all (checked on 7.0: COMMAND LIST), so nothing makes a
# running Sentinel re-read its certificate.
SENTINEL_RENEWED = (
    "renewed on disk; a Sentinel cannot re-read its certificate (no CONFIG SET in Sentinel "
    "mode): it serves the new one once restarted"
)


# A Sentinel that this machine's `redkeep up` runs: restarted on its run/NAME.conf.
RESTARTED = "restarted"


def _told(applied: str) -> bool:
    """Was the endpoint told to re-read its certificate (so a handshake must show it)?"""
    return applied == CONFIG_SET or applied.startswith(("SIGHUP", RESTARTED))


def _same_file(bundle: Bundle, setting: str | None, path: Path) -> bool:
    if setting is None:
        return True  # the default: the bundle's own
    return bundle.path(setting).resolve() == path.resolve()


def rotate_server(
    bundle: Bundle, client: redis.Redis, target: Target, now: dt.datetime
) -> RotationReport:
    """Issue a new server certificate from the bundle's CA and make every TLS endpoint of
    the bundle serve it; report what each one serves afterwards.

    The new pair replaces server.crt/server.key. Redis: `CONFIG SET tls-cert-file
    tls-key-file` with the paths it already uses makes it re-read them (Redis 6.2+, 7.0.1+);
    if Redis refuses, the old pair is put back and re-applied. The proxy: SIGHUP (found the
    sure way, `stack/processes.py`). No restart, no dropped connection.
    """
    files = bundle.tls
    settings = bundle.settings
    ca_cert, ca_key = load_ca(files)
    old_cert = load_certificate(files.server_cert)
    old_key_pem = files.server_key.read_bytes()
    cert, key = issue.make_server_cert(
        ca_cert,
        ca_key,
        settings.tls.server_names,
        settings.tls.key_type,
        settings.tls.cert_days,
        now,
    )
    endpoints = tls_endpoints(bundle, target)
    paths = _served_paths(client, target)
    write_pair(files.server_cert, files.server_key, cert, key)
    try:
        _config_set(client, target, paths)
    except RedkeepError:
        atomic_write(files.server_key, old_key_pem, SECRET_MODE)
        atomic_write(files.server_cert, issue.cert_pem(old_cert), PUBLIC_MODE)
        _config_set(client, target, paths)
        raise
    applied = {"redis": CONFIG_SET, "proxy": _reload_proxy(bundle)}
    new_serial = format(cert.serial_number, "x")
    return RotationReport(
        old_serial=format(old_cert.serial_number, "x"),
        new_serial=new_serial,
        not_after=cert.not_valid_after_utc.isoformat(),
        paths=paths,
        endpoints=[
            _served(
                endpoint, applied[endpoint.name], new_serial, target, _told(applied[endpoint.name])
            )
            for endpoint in endpoints
        ],
    )


def _reload_proxy(bundle: Bundle) -> str:
    located = processes.locate(PROXY, bundle.root, bundle.run_dir)
    if located.pid is not None and processes.send_signal(
        located.pid, PROXY, bundle.root, signal.SIGHUP
    ):
        return f"SIGHUP to pid {located.pid}"
    return (
        f"{NOT_SIGNALLED}: no proxy of this bundle runs on this machine (it reads the new "
        "certificate when it starts)"
    )


def _served(
    endpoint: Endpoint,
    applied: str,
    new_serial: str,
    target: Target,
    told: bool,
    timeout: float = VERIFY_TIMEOUT,
) -> EndpointResult:
    """Handshake with `endpoint` until it serves `new_serial` (a reload takes a moment); one
    handshake only for an endpoint that was not `told`, which serves the new one later."""
    deadline = time.monotonic() + (timeout if told else 0)
    while True:
        probe = handshake(
            endpoint.host,
            endpoint.port,
            ca=target.tls_ca,
            cert=target.tls_cert,
            key=target.tls_key,
            server_name=endpoint.server_name,
        )
        serial = format(probe.certificate.serial_number, "x") if probe.certificate else None
        if serial == new_serial or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    problem = ""
    if serial is None and told:
        problem = f"no TLS handshake: {probe.error}"
    elif serial is not None and serial != new_serial:
        problem = f"still serves serial {serial}" + (
            f" {timeout:g}s after {applied}" if told else ""
        )
    return EndpointResult(
        endpoint.name, endpoint.address, applied, serial, serial == new_serial, problem
    )


def _served_paths(
    client: redis.Redis,
    target: Target,
    names: tuple[str, str] = ("server.crt", "server.key"),
    folder: str = "tls/",
) -> tuple[str, str]:
    """The certificate and key files the server reads; raise RedkeepError unless they are the
    bundle's `names` (compared by name: in a container the directory differs)."""
    try:
        config = client.config_get("tls-cert-file", "tls-key-file")
    except redis.RedisError as error:
        raise explain_failure(error, target, "CONFIG GET") from None
    cert_path, key_path = config.get("tls-cert-file", ""), config.get("tls-key-file", "")
    if not cert_path or not key_path:
        raise RedkeepError(f"{target.where} serves no TLS certificate (tls-cert-file is empty)")
    if (os.path.basename(cert_path), os.path.basename(key_path)) != names:
        raise RedkeepError(
            f"{target.where} reads {cert_path} and {key_path}, not the bundle's {names[0]} and "
            f"{names[1]}; point its config at the bundle's {folder} directory"
        )
    return cert_path, key_path


def _config_set(client: redis.Redis, target: Target, paths: tuple[str, str]) -> None:
    # One CONFIG SET for both, so Redis applies them together or not at all.
    try:
        client.execute_command("CONFIG", "SET", "tls-cert-file", paths[0], "tls-key-file", paths[1])
    except redis.RedisError as error:
        raise explain_failure(error, target, "CONFIG SET tls-cert-file") from None


@dataclass(frozen=True)
class NodeCertificate:
    """One node of a sentinel or cluster deployment after the rotation of its certificate."""

    name: str
    address: str
    path: str  # its certificate in the bundle: tls/nodes/NAME.crt
    old_serial: str
    new_serial: str  # "" when it was not renewed (the node could not be told)
    not_after: str  # of the certificate in `path` now
    applied: str  # "CONFIG SET", "renewed on disk; ..." (a Sentinel), or why it was not renewed
    serial: str | None  # the serial it serves now (None: no handshake)
    current: bool  # it serves the new certificate
    problem: str = ""


@dataclass(frozen=True)
class ProxyCertificate:
    """The proxy of a sentinel bundle after the rotation of its certificate (tls/server.crt,
    as for a standalone bundle)."""

    path: str
    old_serial: str
    new_serial: str
    not_after: str
    endpoint: EndpointResult  # what a fresh handshake on proxy.listen shows


@dataclass(frozen=True)
class NodesRotationReport:
    topology: str
    nodes: list[NodeCertificate]
    proxy: ProxyCertificate | None = None  # None: no proxy serves the bundle's certificate

    @property
    def complete(self) -> bool:
        """Every data node serves its new certificate, every Sentinel restarted here does
        (the others: once restarted), and so does the proxy when it runs here."""
        proxy_problem = self.proxy is not None and bool(self.proxy.endpoint.problem)
        return not proxy_problem and not any(node.problem for node in self.nodes)

    @property
    def restart_needed(self) -> list[str]:
        """The nodes whose new certificate waits for a restart: the Sentinels."""
        return [
            node.name
            for node in self.nodes
            if node.new_serial and not node.current and not node.problem
        ]

    @property
    def restarted(self) -> list[str]:
        """The Sentinels restarted to serve their new certificate (this machine's `up` runs
        them)."""
        return [node.name for node in self.nodes if node.applied.startswith(RESTARTED)]

    def to_json(self) -> dict:
        return {
            "topology": self.topology,
            "complete": self.complete,
            "restart_needed": self.restart_needed,
            "restarted": self.restarted,
            "nodes": [asdict(node) for node in self.nodes],
            "proxy": asdict(self.proxy) if self.proxy is not None else None,
        }


def rotate_nodes(bundle: Bundle, nodes: tuple[Node, ...], now: dt.datetime) -> NodesRotationReport:
    """Renew each node's certificate from the bundle's CA and make each data node serve its
    new one with CONFIG SET (no restart, so no failover); report what each node serves.

    Each node is on its own: one that cannot be reached or refuses keeps its old certificate
    (files put back), the others keep the new one; all are signed by the same CA, so every
    link keeps working. A Sentinel's file is renewed; one that this machine's `up` runs is
    restarted (Sentinel mode has no CONFIG SET), any other serves it at its next start.
    """
    load_ca(bundle.tls)  # the CA and every node's certificate are there before any change
    for node in nodes:
        load_certificate(bundle.tls.node_cert(node.name))
    results = [
        _rotate_data_node(bundle, node, now) for node in nodes if node.role is not Role.SENTINEL
    ]
    sentinels = [node for node in nodes if node.role is Role.SENTINEL]
    if sentinels:
        results += _rotate_sentinels(bundle, sentinels, now)
    proxy = _rotate_proxy(bundle, nodes[0].target, now)
    return NodesRotationReport(bundle.settings.deployment.topology, results, proxy)


def _rotate_proxy(bundle: Bundle, client: Target, now: dt.datetime) -> ProxyCertificate | None:
    """Renew tls/server.crt when the bundle's proxy serves it, SIGHUP the proxy this machine
    runs, and handshake with it (`client`: the CA and client certificate to do it with) until
    it serves the new serial. None when the proxy is off, plaintext or has its own file, and
    for a cluster, which has no proxy (it is no cluster router)."""
    proxy = bundle.settings.proxy
    files = bundle.tls
    if bundle.settings.deployment.topology == "cluster":
        return None
    if not (proxy.enabled and proxy.tls and _same_file(bundle, proxy.tls_cert, files.server_cert)):
        return None
    tls = bundle.settings.tls
    old = load_certificate(files.server_cert)
    cert, key = issue.make_server_cert(
        *load_ca(files), tls.server_names, tls.key_type, tls.cert_days, now
    )
    write_pair(files.server_cert, files.server_key, cert, key)
    host, port = parse_host_port(proxy.listen, "proxy.listen")
    endpoint = Endpoint("proxy", LOOPBACK.get(host, host), port, bundle.settings.host)
    new_serial = format(cert.serial_number, "x")
    node = _node_on_port(bundle, port)
    if node is None:
        applied = _reload_proxy(bundle)
        served = _served(endpoint, applied, new_serial, client, _told(applied))
    else:  # `up` refuses to run the proxy there: whatever answers is that node
        applied = f"{NOT_SIGNALLED}: proxy.listen is {node}'s port here, so no proxy runs on it"
        served = EndpointResult("proxy", endpoint.address, applied, None, False)
    return ProxyCertificate(
        path=str(files.server_cert),
        old_serial=format(old.serial_number, "x"),
        new_serial=new_serial,
        not_after=cert.not_valid_after_utc.isoformat(),
        endpoint=served,
    )


def _node_on_port(bundle: Bundle, port: int) -> str | None:
    """The node of the bundle's plan that listens on `port` on this machine, if one does."""
    settings = bundle.settings
    planned = plan_nodes(settings.deployment, settings.redis.tls_port)
    return next((node.name for node in planned if port in (node.port, node.bus_port)), None)


def _rotate_sentinels(
    bundle: Bundle, sentinels: list[Node], now: dt.datetime
) -> list[NodeCertificate]:
    """Renew each Sentinel's certificate; restart the ones this machine's `up` runs, one at a
    time (under the bundle's lock), each once the Sentinels are all linked again. After a
    Sentinel that does not come back, the rest wait for a restart: the quorum comes first."""
    from redkeep.actions import stack_nodes  # noqa: PLC0415 - only a local deployment needs it

    results = []
    with stack_lock(bundle.run_dir, "certs rotate"):
        failed = False
        for node in sentinels:
            pid = None if failed else stack_nodes.local_sentinel(bundle, node.name)
            cert_path = bundle.tls.node_cert(node.name)
            old_cert = load_certificate(cert_path)
            _renew_node(bundle, node, now)
            new_cert = load_certificate(cert_path)
            if pid is None:
                results.append(_node_result(node, cert_path, old_cert, new_cert, SENTINEL_RENEWED))
                continue
            try:
                new_pid = stack_nodes.restart_sentinel(bundle, node.name, pid)
            except RedkeepError as error:
                failed = True
                result = _node_result(node, cert_path, old_cert, new_cert, SENTINEL_RENEWED)
                results.append(replace(result, problem=f"restart failed: {error.message}"))
                continue
            applied = f"{RESTARTED}: pid {pid}, now {new_pid}"
            results.append(_node_result(node, cert_path, old_cert, new_cert, applied))
    return results


def _rotate_data_node(bundle: Bundle, node: Node, now: dt.datetime) -> NodeCertificate:
    files, target = bundle.tls, node.target
    cert_path, key_path = files.node_cert(node.name), files.node_key(node.name)
    old_cert = load_certificate(cert_path)
    try:
        with session(target) as client:
            paths = _served_paths(client, target, (cert_path.name, key_path.name), "tls/nodes/")
            old_key_pem = key_path.read_bytes()
            _renew_node(bundle, node, now)
            try:
                _config_set(client, target, paths)
            except RedkeepError:
                atomic_write(key_path, old_key_pem, SECRET_MODE)
                atomic_write(cert_path, issue.cert_pem(old_cert), PUBLIC_MODE)
                _config_set(client, target, paths)
                raise
    except RedkeepError as error:
        return _node_result(
            node, cert_path, old_cert, None, f"kept its certificate: {error.message}"
        )
    return _node_result(node, cert_path, old_cert, load_certificate(cert_path), CONFIG_SET)


def _renew_node(bundle: Bundle, node: Node, now: dt.datetime) -> None:
    tls = bundle.settings.tls
    issue_node(bundle.tls, node.name, tls.server_names, tls.key_type, tls.cert_days, now)


def _node_result(
    node: Node, path: Path, old: x509.Certificate, new: x509.Certificate | None, applied: str
) -> NodeCertificate:
    """What the node serves now, by a TLS handshake; a problem unless it is what was meant."""
    target = node.target
    endpoint = Endpoint(node.name, target.host, target.port, target.host)
    new_serial = format(new.serial_number, "x") if new is not None else ""
    told = _told(applied)
    served = _served(endpoint, applied, new_serial, target, told)
    # Not told: a Sentinel serves its renewed file once restarted; a node not renewed failed.
    problem = served.problem if told else ("" if new is not None else applied)
    return NodeCertificate(
        name=node.name,
        address=endpoint.address,
        path=str(path),
        old_serial=format(old.serial_number, "x"),
        new_serial=new_serial,
        not_after=(new or old).not_valid_after_utc.isoformat(),
        applied=applied if new is not None else "not renewed",
        serial=served.serial,
        current=served.current,
        problem=problem,
    )
