"""`redkeep audit`: gather facts from each server, run the checks, write metrics.

A deployment (a sentinel or cluster bundle, or one URL with --all-nodes, found by
`redis/discover.py`) is audited node by node, Sentinels included; each node's facts then carry
every other node's (`Facts.peers`) for the checks that compare nodes.
"""

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from redkeep.actions.locate import load_bundle, target_for
from redkeep.app import Application
from redkeep.audit.checks import CHECKS, SEVERITIES
from redkeep.audit.facts import Facts, gather
from redkeep.audit.report import AuditReport, TargetReport, UnreachableReport, run_checks
from redkeep.bundle import Bundle
from redkeep.errors import ConnectError, RedkeepError, UsageError
from redkeep.exporter.exposition import Family, write_textfile
from redkeep.redis.deployment import Deployment, Topology
from redkeep.redis.discover import Skipped, discover
from redkeep.redis.target import ConnectionOptions, Target

ACCEPT_FILE = "audit-accept.txt"  # a bundle's accepted check ids, if it has any


@dataclass(frozen=True)
class AuditRequest:
    """The flags of `redkeep audit`, as given."""

    urls: tuple[str, ...] = ()
    connection: ConnectionOptions = ConnectionOptions()
    directory: Path | None = None
    accepted: tuple[str, ...] = ()
    accept_file: Path | None = None
    lua_probe: bool = False
    metrics_file: Path | None = None
    all_nodes: bool = False  # the whole deployment of the one URL (or of the bundle)


GATHER_THREADS = 8  # nodes read at once; each read is a handful of round trips


def run_audit(app: Application, request: AuditRequest) -> list[TargetReport]:
    """Audit the servers asked for (else the bundle's, as its admin); one report each.

    Inside a bundle without URLs its audit-accept.txt is read and the metrics go where its
    exporter finds them; a sentinel or cluster bundle is audited on every node. With
    `all_nodes`, the deployment of the one URL (or the bundle's) is discovered and audited.
    """
    connection = request.connection
    if connection.url and request.urls:
        raise UsageError("give the servers as URL arguments or one --url, not both")
    if request.all_nodes and len(request.urls) > 1:
        raise UsageError(
            "--all-nodes takes one URL: the other nodes are found from it (CLUSTER NODES, "
            "Sentinel, INFO replication)"
        )
    bundle = load_bundle(app, request.directory, required=False)
    own = bundle is not None and not request.urls and not connection.url
    accept_file = request.accept_file
    if own and accept_file is None and (bundle.root / ACCEPT_FILE).exists():
        accept_file = bundle.root / ACCEPT_FILE
    accept = set(request.accepted) | (read_accept_file(accept_file) if accept_file else set())
    unknown = sorted(accept - {check.id for check in CHECKS})
    if unknown:
        raise UsageError(f"--accept {', '.join(unknown)}: no such check (ids: NET-01 ... HA-12)")
    if own and not _standalone(bundle):
        # Its nodes as the bundle names them; with --all-nodes, as they are found now. A
        # sourced .env's REDIS_URL names the app's endpoint (the proxy), not the nodes.
        deployment = _with_timeout(bundle.deployment("admin"), connection.timeout)
        if request.all_nodes:
            reports = audit_discovered(deployment.nodes[0].target, accept, request.lua_probe)
        else:
            reports = audit_deployment(deployment, accept, request.lua_probe)
    else:
        targets = [
            target_for(dataclasses.replace(connection, url=url), bundle, "admin")
            for url in (request.urls or [connection.url])
        ]
        if request.all_nodes:
            reports = audit_discovered(targets[0], accept, request.lua_probe)
        else:
            reports = audit_targets(targets, accept, request.lua_probe)
    metrics_file = request.metrics_file
    if own and metrics_file is None:  # for the bundle's exporter (redkeep_audit_*)
        metrics_file = bundle_audit_metrics(bundle)
    if metrics_file:
        write_metrics(metrics_file, reports)
    return reports


def bundle_audit_metrics(bundle: Bundle) -> Path:
    """Where a bundle's exporter finds the audit's metrics: beside the backups' metrics."""
    return (bundle.root / bundle.settings.backup.metrics_file).parent / "redkeep_audit.prom"


def read_accept_file(path: Path) -> set[str]:
    """Check ids, one per line; '#' starts a comment (say why a finding is accepted)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    return {line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()}


def bundle_audit(bundle: Bundle) -> TargetReport:
    """The audit of a bundle's own Redis as its admin user, with its accepted ids.

    One report, for a one-line score: for a sentinel or cluster bundle every node is audited
    and the report of a node that could not be reached, else the lowest score, is returned.
    """
    accept_path = bundle.root / ACCEPT_FILE
    accepted = read_accept_file(accept_path) if accept_path.exists() else set()
    if _standalone(bundle):
        return audit_targets([bundle.target("admin")], accepted)[0]
    reports = audit_deployment(bundle.deployment("admin"), accepted)
    return min(reports, key=lambda report: getattr(report, "score", -1))


def _standalone(bundle: Bundle) -> bool:
    return bundle.settings.deployment.topology == Topology.STANDALONE.value


def _with_timeout(deployment: Deployment, timeout: float) -> Deployment:
    nodes = tuple(
        dataclasses.replace(node, target=dataclasses.replace(node.target, timeout=timeout))
        for node in deployment.nodes
    )
    return dataclasses.replace(deployment, nodes=nodes)


def audit_discovered(
    seed: Target, accepted: set[str], lua_probe: bool = False
) -> list[TargetReport]:
    """Find the deployment `seed` belongs to and audit every node of it (see audit_deployment);
    the seed that cannot be asked is the one report."""
    try:
        found = discover(seed)
    except RedkeepError as error:
        return [
            UnreachableReport(seed.display_url, f"cannot discover its deployment: {error.message}")
        ]
    return audit_deployment(found.deployment, accepted, lua_probe, found.skipped)


def audit_deployment(
    deployment: Deployment,
    accepted: set[str],
    lua_probe: bool = False,
    skipped: tuple[Skipped, ...] = (),
) -> list[TargetReport]:
    """One report per node, data nodes (primaries first) then Sentinels; each node's checks see
    the facts of all the others. A node the discovery skipped is reported as not reached."""
    sentinels = [node for node in deployment.nodes if not node.holds_data]
    nodes = [*deployment.every_node(), *sentinels]
    with ThreadPoolExecutor(max_workers=GATHER_THREADS) as pool:
        gathered = list(pool.map(lambda node: _gather(node.target, lua_probe), nodes))
    facts: list[Facts] = []
    for node, result in zip(nodes, gathered, strict=True):
        if isinstance(result, Facts):
            result.node = node
            facts.append(result)
    for item in facts:
        item.peers = tuple(facts)
    reports: list[TargetReport] = []
    for node, result in zip(nodes, gathered, strict=True):
        if isinstance(result, Facts):
            reports.append(run_checks(result, accepted))
        else:
            reports.append(dataclasses.replace(result, node=node.name, role=node.role.value))
    reports += [
        UnreachableReport(item.address, f"skipped: {item.reason}", item.address, item.role.value)
        for item in skipped
    ]
    return reports


def audit_targets(
    targets: list[Target], accepted: set[str], lua_probe: bool = False
) -> list[TargetReport]:
    """One report per target; a server that cannot be reached gets an UnreachableReport."""
    reports: list[TargetReport] = []
    for target in targets:
        result = _gather(target, lua_probe)
        reports.append(run_checks(result, accepted) if isinstance(result, Facts) else result)
    return reports


def _gather(target: Target, lua_probe: bool) -> Facts | UnreachableReport:
    """The facts of one server, or why there are none."""
    try:
        return gather(target, timeout=target.timeout, lua_probe=lua_probe)
    except ConnectError as error:
        return UnreachableReport(target.display_url, error.message)
    except RedkeepError as error:  # e.g. WRONGPASS: the audit could not log in
        return UnreachableReport(target.display_url, error.message)
    except (OSError, ValueError, TypeError, KeyError, IndexError) as error:
        # An answer nobody expected: this target's audit failed, the others go on.
        reason = f"the audit failed: {type(error).__name__}: {error}"
        return UnreachableReport(target.display_url, reason[:200])


def write_metrics(path: Path, reports: list[TargetReport]) -> None:
    """Prometheus textfile: findings by severity and the score per target (for the exporter)."""
    findings = Family(
        "redkeep_audit_findings", "gauge", "Audit findings not accepted, by severity."
    )
    scores = Family("redkeep_audit_score", "gauge", "Audit score out of 100.")
    for report in reports:
        if not isinstance(report, AuditReport):
            continue
        target = report.target
        for severity in SEVERITIES:
            findings.add(report.counts[severity], {"target": target, "severity": severity})
        scores.add(report.score, {"target": target})
    write_textfile(path, [findings, scores])
