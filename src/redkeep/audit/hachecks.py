"""The HA checks: replication, Sentinel and Cluster settings that lose data or open a door.

Same shape as checks.py (one function per check, registered in the same list). Some compare
nodes: they read `facts.peers`, the facts of every node audited with this one (`redkeep audit`
in a bundle, or a URL with `--all-nodes`). Audited alone, such a check is not applicable on a
standalone server and "could not verify" on a node that has peers. Replication in clear and
the cluster bus' `tls-cluster no` stay TLS-06's (checks.py), which runs on every data node.
"""

from collections import Counter

from redkeep.audit.checks import (
    ANY,
    POWERS,
    SENTINEL,
    Finding,
    Passed,
    check,
    dryrun_users,
    named_admin,
    yes,
)
from redkeep.audit.facts import (
    BUS_PLAINTEXT,
    BUS_UNREACHABLE,
    Facts,
    NotApplicable,
    Unavailable,
    need,
)
from redkeep.redis.acl import AclUser, signature
from redkeep.redis.discover import ClusterNode

# --- helpers ---------------------------------------------------------------------------------

SENTINEL_DOWN = ("s_down", "o_down", "disconnected")
SENTINEL_POWERS = ("sentinel set", "sentinel failover", "sentinel remove", "sentinel config set")


def _role(facts: Facts) -> str:
    return facts.info_field("role", "replication") or "master"


def _clustered(facts: Facts) -> bool:
    return facts.info_field("cluster_enabled", "cluster") == "1"


def _sentinel_clients(facts: Facts) -> bool:
    """Sentinels name their connections sentinel-<id>-cmd / -pubsub."""
    try:
        return any(c.get("name", "").startswith("sentinel-") for c in need(facts.clients))
    except Unavailable:
        return False


def failover_by(facts: Facts) -> str:
    """What promotes a replica in this node's deployment: "cluster", "sentinel" or ""."""
    if _clustered(facts):
        return "cluster"
    peers = facts.peers or ()
    if any(peer.is_sentinel for peer in peers) or _sentinel_clients(facts):
        return "sentinel"
    if facts.peers is None and _role(facts) == "slave":
        raise Unavailable("audited alone, a replica cannot tell whether Sentinels watch it")
    return ""


def _alone(facts: Facts) -> None:
    """Raise why a cross-node check cannot compare: NotApplicable on a standalone server."""
    if facts.peers is not None:
        return
    replicas = int(facts.info_field("connected_slaves", "replication") or 0)
    if facts.is_sentinel or _clustered(facts) or _role(facts) == "slave" or replicas:
        raise Unavailable(
            "audited alone: audit the deployment (its bundle, or --all-nodes) to compare nodes"
        )
    raise NotApplicable("a standalone server has no other node to compare with")


def _my_cluster_node(facts: Facts) -> "ClusterNode | None":
    return next((node for node in need(facts.cluster_nodes) if node.myself), None)


def primary_of(facts: Facts) -> Facts:
    """The facts of the node this replica replicates from, among its peers."""
    _alone(facts)
    peers = [peer for peer in facts.peers or () if peer is not facts and not peer.is_sentinel]
    if _clustered(facts):
        myself = _my_cluster_node(facts)
        for peer in peers:
            try:
                theirs = _my_cluster_node(peer)
            except Unavailable:
                continue
            if myself is not None and theirs is not None and theirs.id == myself.primary_id:
                return peer
    replid = facts.info_field("master_replid", "replication")
    host = facts.info_field("master_host", "replication")
    port = facts.info_field("master_port", "replication")
    for peer in peers:
        try:
            if _role(peer) != "master":
                continue
            same_history = replid and peer.info_field("master_replid", "replication") == replid
        except Unavailable:
            continue
        same_address = str(peer.target.port) == port and peer.target.host == host
        if same_history or same_address:
            return peer
    raise Unavailable(f"its primary ({host}:{port}) was not among the nodes audited")


def _login_free(users: dict[str, AclUser]) -> bool:
    """Anyone may log in: the default user is on without a password."""
    default = users.get("default")
    return default is not None and default.enabled and "nopass" in default.flags


def _replication_login(facts: Facts) -> tuple[str, dict[str, AclUser], str]:
    """(the node whose users a replication login meets, those users, how it was chosen)."""
    if _role(facts) == "slave":
        primary = primary_of(facts)
        return primary.name, need(primary.users), ""
    return (
        facts.name,
        need(facts.users),
        " (its own users: after a failover it replicates from a peer, whose users HA-07 compares)",
    )


# --- data nodes ------------------------------------------------------------------------------


@check(
    "HA-01",
    "Replication login missing or wrong",
    "CONFIG GET masteruser masterauth (as a hash); the primary's ACL users",
)
def replication_login(facts: Facts) -> Passed | Finding:
    """A replica needs masteruser/masterauth that its primary accepts; in a failover
    deployment a primary needs them too, for the day it is demoted."""
    role, failover = _role(facts), failover_by(facts)
    if role != "slave" and not failover:
        return Passed(f"role {role} without automatic failover: it replicates from nobody")
    whose, users, note = _replication_login(facts)
    user_name = facts.setting("masteruser") or "default"
    digest = facts.setting("masterauth") or ""
    link = facts.info_field("master_link_status", "replication")
    link_note = f"; master_link_status {link}" if link else ""
    severity = "high" if role == "slave" else "medium"
    later = "" if role == "slave" else f"after a {failover} failover, "
    if _login_free(users):
        return Passed(f"{whose} lets anyone replicate (default user on, nopass: see NET-01)")
    user = users.get(user_name)
    if not digest:
        problem = f"no masterauth, and {whose} requires a login"
    elif user is None or not user.enabled:
        state = "does not exist" if user is None else "is off"
        problem = f"masteruser {user_name} {state} on {whose}"
    elif digest not in user.passwords and "nopass" not in user.flags:
        problem = f"masterauth is not a password of user {user_name} on {whose}"
    else:
        return Passed(f"logs in to {whose} as {user_name} with a password it accepts{note}")
    return Finding(
        severity,
        f"{problem}{note}{link_note}: {later}this node cannot sync, and the next reconnect "
        "leaves it without data",
        "masteruser replication and masterauth <its password> (CONFIG SET masterauth ..., then "
        "CONFIG REWRITE), the same on every data node",
    )


@check(
    "HA-02",
    "Replication login has more rights than it needs",
    "CONFIG GET masteruser masterauth; ACL DRYRUN of the primary",
)
def replication_rights(facts: Facts) -> Passed | Finding:
    """masterauth is readable with CONFIG GET on every replica: the user it logs in as should
    be able to do no more than replicate."""
    digest = facts.setting("masterauth") or ""
    if not digest:
        return Passed("no masterauth (see HA-01)")
    user_name = facts.setting("masteruser") or ""
    if not user_name:
        return Finding(
            "medium",
            "masterauth without masteruser: replicas log in as the default user, whose password "
            "sits in every replica's configuration",
            "masteruser replication, a user with only +psync +replconf +ping",
        )
    whose, _, _ = _replication_login(facts)
    source = facts if whose == facts.name else primary_of(facts)
    dryrun = need(source.dryrun)
    powers = [probe.upper() for probe in POWERS if dryrun.get((user_name, probe))]
    if powers:
        return Finding(
            "high",
            f"masteruser {user_name} may {', '.join(powers)} on {whose}; its password is in "
            "masterauth, readable with CONFIG GET on every replica",
            f"ACL SETUSER {user_name} reset on >PASSWORD +psync +replconf +ping  (or a "
            "dedicated replication user)",
        )
    return Passed(f"masteruser {user_name} may not {', '.join(POWERS)} on {whose}")


@check(
    "HA-03",
    "Writes acknowledged with no replica to keep them",
    "INFO replication; CONFIG GET min-replicas-to-write",
)
def writes_without_replicas(facts: Facts) -> Passed | Finding:
    if _role(facts) != "master":
        return Passed("a replica: writes go to its primary")
    replicas = int(facts.info_field("connected_slaves", "replication") or 0)
    known = sum(
        1
        for peer in facts.peers or ()
        if peer is not facts and not peer.is_sentinel and _replica_of(peer, facts)
    )
    replicas = max(replicas, known)
    value = facts.setting("min-replicas-to-write")
    if value is None:
        raise Unavailable("CONFIG GET min-replicas-to-write returned nothing")
    if replicas and value == "0":
        return Finding(
            "medium",
            f"min-replicas-to-write 0 with {replicas} replicas: cut off from them, this primary "
            "keeps acknowledging writes that the failover to a replica then throws away",
            "min-replicas-to-write 1 and min-replicas-max-lag 10  (writes fail instead while no "
            "replica is in sync)",
        )
    return Passed(f"min-replicas-to-write {value}, {replicas} replicas")


def _replica_of(node: Facts, primary: Facts) -> bool:
    try:
        return _role(node) == "slave" and primary_of(node) is primary
    except (Unavailable, NotApplicable):
        return False


@check(
    "HA-04",
    "A failover can promote a replica that never synced",
    "CONFIG GET repl-diskless-sync repl-diskless-sync-delay; Sentinel or Cluster",
)
def diskless_sync_delay(facts: Facts) -> Passed | Finding:
    """With 7.0's default delay of 5 s a replica waits that long for its first full sync;
    Sentinel promoted such a replica and an acknowledged SET was lost (issue 14)."""
    failover = failover_by(facts)
    if not failover:
        return Passed("no automatic failover (no Sentinel, not a Cluster node)")
    diskless = facts.setting("repl-diskless-sync")
    delay = facts.setting("repl-diskless-sync-delay") or "0"
    if yes(diskless) and delay != "0":
        return Finding(
            "high",
            f"repl-diskless-sync yes with repl-diskless-sync-delay {delay} under {failover} "
            f"failover: a replica has no data for {delay} s after it connects, and a failover "
            "in that window promotes it (every write since is lost)",
            "repl-diskless-sync-delay 0",
        )
    return Passed(f"repl-diskless-sync {diskless}, repl-diskless-sync-delay {delay}")


@check(
    "HA-05",
    "Cluster serves a partial keyspace",
    "INFO cluster; CONFIG GET cluster-require-full-coverage",
)
def partial_coverage(facts: Facts) -> Passed | Finding:
    if not _clustered(facts):
        return Passed("not a Cluster node")
    value = facts.setting("cluster-require-full-coverage")
    if value == "no":
        return Finding(
            "medium",
            "cluster-require-full-coverage no: with a shard down the others keep serving, so "
            "clients see some keys and silently miss the rest",
            "cluster-require-full-coverage yes  (accept this id for a cache that may lose keys)",
        )
    return Passed(f"cluster-require-full-coverage {value}")


@check("HA-06", "Cluster bus answers without TLS", "CLUSTER NODES; a TLS hello to the bus port")
def bus_in_clear(facts: Facts) -> Passed | Finding:
    """The bus has no login: whoever speaks to it in plaintext can join or reconfigure the
    cluster. TLS (with tls-auth-clients) is its only lock."""
    if not _clustered(facts):
        return Passed("not a Cluster node")
    answer = need(facts.bus)
    if answer.startswith(BUS_PLAINTEXT):
        return Finding(
            "high",
            f"the cluster bus speaks plaintext ({answer}): anyone who reaches it can send "
            "cluster messages (MEET, failover, slot changes)",
            "tls-cluster yes  (on every node; tls-auth-clients yes; firewall the bus port)",
        )
    if answer.startswith(BUS_UNREACHABLE):
        return Passed(f"the bus port does not answer from here ({answer})")
    return Passed(f"the bus answers TLS ({answer})")


# --- every node ------------------------------------------------------------------------------


def _difference(mine: tuple | None, theirs: tuple | None) -> str:
    if mine is None:
        return "missing here"
    if theirs is None:
        return "only here"
    parts = ["on/off and flags", "passwords", "command rules", "key patterns", "channels"]
    return ", ".join(name for name, a, b in zip(parts, mine, theirs, strict=True) if a != b)


@check("HA-07", "ACL users differ between nodes", "ACL GETUSER on every node", on=ANY)
def acl_drift(facts: Facts) -> Passed | Finding:
    """ACL users are per node (not replicated): after a failover, a node with other users
    refuses the application, or still takes a password that was revoked elsewhere. Data
    nodes are compared with data nodes, Sentinels with Sentinels; per user, the version most
    nodes have (the first node's on a tie) is the reference."""
    _alone(facts)
    mine = need(facts.users)
    group = []
    for peer in facts.peers or ():
        if peer.is_sentinel == facts.is_sentinel and not isinstance(peer.users, Unavailable):
            group.append(peer)
    what = "Sentinels" if facts.is_sentinel else "data nodes"
    if len(group) < 2:
        raise NotApplicable(f"the only one of the {what} whose users could be read")
    names = sorted({name for peer in group for name in need(peer.users)})
    differences = []
    for name in names:
        signatures = [signature(need(peer.users).get(name)) for peer in group]
        counts = Counter(signatures)
        reference = max(counts, key=lambda sig: (counts[sig], -signatures.index(sig)))
        own = signature(mine.get(name))
        if own != reference:
            agree = [peer.name for peer, sig in zip(group, signatures, strict=True)
                     if sig == reference]  # fmt: skip
            differences.append(f"{name}: {_difference(own, reference)} (as on {', '.join(agree)})")
    if differences:
        first = differences[0].split(":")[0]
        return Finding(
            "high",
            f"users that differ from the other {what}: {'; '.join(differences)}",
            f"make the ACL files identical and ACL LOAD on every node (`redkeep users rotate "
            f"{first}` keeps passwords in step)",
        )
    return Passed(f"{len(names)} users identical on {len(group)} {what}")


# --- Sentinels -------------------------------------------------------------------------------


@check(
    "HA-08",
    "Sentinel without authentication",
    "a connection without credentials; ACL GETUSER default",
    on=SENTINEL,
)
def sentinel_open(facts: Facts) -> Passed | Finding:
    """Whoever talks to a Sentinel without a login can make it fail over, forget the primary
    or watch another one, and so point every client at a server of their choosing."""
    reply = need(facts.unauthenticated)
    default = need(facts.users).get("default")
    open_default = default is not None and default.enabled and "nopass" in default.flags
    powers = [
        probe.upper()
        for probe in (*SENTINEL_POWERS, "acl setuser")
        if open_default and "default" in dryrun_users(facts, probe)
    ]
    if reply == "PONG" or powers:
        shown = f"; as the default user (on, nopass) it may {', '.join(powers)}" if powers else ""
        return Finding(
            "critical",
            f"PING without AUTH answered {reply[:40]}{shown}",
            "user default off  and ACL users for admin and the clients in sentinel.conf (the "
            "same on every Sentinel; or requirepass, but not both)",
        )
    note = f" (user default is on, nopass, with {default.commands})" if open_default else ""
    return Passed(f"PING without AUTH answered: {reply[:60]}{note}")


def _primary_facts(facts: Facts, master: dict[str, str]) -> Facts:
    """The audited data node a Sentinel's primary entry points at (by run id, else address)."""
    _alone(facts)
    for peer in facts.peers or ():
        if peer.is_sentinel:
            continue
        try:
            run_id = peer.info_field("run_id", "server")
        except Unavailable:
            continue
        same_address = str(peer.target.port) == master.get("port") and peer.target.host in (
            master.get("ip"),
            master.get("name"),
        )
        if (master.get("runid") and run_id == master["runid"]) or same_address:
            return peer
    where = f"{master.get('ip')}:{master.get('port')}"
    raise Unavailable(f"its primary {master.get('name')} ({where}) was not among the nodes audited")


@check(
    "HA-09",
    "Sentinel cannot log in to its primary",
    "SENTINEL MASTERS, SENTINEL MYID; the primary's CLIENT LIST and ACL users",
    on=SENTINEL,
)
def sentinel_link(facts: Facts) -> Passed | Finding:
    """A Sentinel without `sentinel auth-user`/`auth-pass` (or with wrong ones, or without
    tls-replication against a TLS-only primary) sees the primary as down and knows none of
    its replicas: it cannot fail over, and it may vote for a failover nobody needs."""
    myid = need(facts.sentinel_myid)
    problems, fine = [], []
    for master in need(facts.sentinel_masters):
        primary = _primary_facts(facts, master)
        flags = master.get("flags", "").split(",")
        link_name = f"sentinel-{myid[:8]}-cmd"
        links = [c for c in need(primary.clients) if c.get("name") == link_name]
        down = [flag for flag in SENTINEL_DOWN if flag in flags]
        if links or not down:
            user = links[0].get("user", "?") if links else "?"
            fine.append(f"{master['name']}: logged in to {primary.name} as {user}")
            continue
        login = "requires a login" if not _login_free(need(primary.users)) else "answers"
        problems.append(
            f"{master['name']}: it sees {primary.name} as {'/'.join(down)} while {primary.name} "
            f"{login} and answers the audit; no {link_name} connection there"
        )
    if problems:
        return Finding(
            "high",
            "; ".join(problems) + " (sentinel auth-user/auth-pass missing or wrong, or "
            "tls-replication no against a TLS primary)",
            "sentinel auth-user <master> sentinel  and  sentinel auth-pass <master> <password> "
            "(SENTINEL SET <master> auth-pass ...), tls-replication yes",
        )
    return Passed("; ".join(fine) or "it watches no primary")


@check(
    "HA-10",
    "Sentinels cannot log in to each other",
    "SENTINEL CONFIG GET sentinel-user sentinel-pass; ACL GETUSER default; SENTINEL SENTINELS",
    on=SENTINEL,
)
def sentinel_peers(facts: Facts) -> Passed | Finding:
    """Sentinels ask each other before a failover; where they require a login, each needs
    `sentinel sentinel-user/sentinel-pass`, or no failover ever reaches its quorum."""
    settings = need(facts.sentinel_config)
    group = [peer for peer in facts.peers or () if peer.is_sentinel] or [facts]
    readable = [peer for peer in group if not isinstance(peer.users, Unavailable)]
    if not readable:
        raise Unavailable("no Sentinel's ACL users could be read")
    locked = [peer.name for peer in readable if not _login_free(need(peer.users))]
    others = "the Sentinels" if len(locked) > 1 else locked[0] if locked else ""
    down = sorted(
        {
            f"{entry.get('ip')}:{entry.get('port')}"
            for entries in need(facts.sentinel_peers).values()
            for entry in entries
            if any(flag in entry.get("flags", "").split(",") for flag in ("s_down", "o_down"))
        }
    )
    seen_down = f"; it sees {', '.join(down)} down" if down else ""
    if locked and not settings.get("sentinel-pass"):
        return Finding(
            "high",
            f"sentinel-pass is not set, and {others} require a login{seen_down}: this Sentinel's "
            "votes and questions to the others are refused",
            "sentinel sentinel-user <user> and sentinel sentinel-pass <password> on every "
            "Sentinel (SENTINEL CONFIG SET sentinel-pass ...)",
        )
    user = settings.get("sentinel-user") or "default"
    state = "set" if settings.get("sentinel-pass") else "not needed"
    return Passed(f"sentinel-user {user}, sentinel-pass {state}{seen_down}")


@check(
    "HA-11",
    "Users that may reconfigure Sentinel",
    "ACL DRYRUN SENTINEL SET/FAILOVER/REMOVE/CONFIG SET, ACL SETUSER for every user",
    on=SENTINEL,
)
def sentinel_powers(facts: Facts) -> Passed | Finding:
    """Clients ask Sentinel where the primary is; only operators should change its answer."""
    risky: dict[str, list[str]] = {}
    for probe in (*SENTINEL_POWERS, "acl setuser"):
        for user in dryrun_users(facts, probe):
            if not named_admin(user) and user != "default":  # default: HA-08's finding
                risky.setdefault(user, []).append(probe.upper())
    if risky:
        listed = "; ".join(f"{user}: {', '.join(probes)}" for user, probes in sorted(risky.items()))
        user = sorted(risky)[0]
        return Finding(
            "high",
            listed,
            f"ACL SETUSER {user} -@all +sentinel|get-master-addr-by-name +sentinel|sentinels "
            "+ping +auth +hello  (what a client needs)",
        )
    return Passed("only administrators may SENTINEL SET, FAILOVER, REMOVE or CONFIG SET")


@check("HA-12", "Too few Sentinels for a failover", "SENTINEL MASTERS", on=SENTINEL)
def sentinel_quorum(facts: Facts) -> Passed | Finding:
    """A failover needs `quorum` Sentinels to call the primary down and a majority of the
    Sentinels that know it to elect a leader."""
    findings, fine = [], []
    for master in need(facts.sentinel_masters):
        known = int(master.get("num-other-sentinels", 0)) + 1
        quorum = int(master.get("quorum", 1))
        shown = f"{master['name']}: {known} Sentinels know it, quorum {quorum}"
        if known < quorum:
            findings.append(("high", f"{shown}: it is never called down, never failed over"))
        elif known < 3:
            findings.append(("medium", f"{shown}: one Sentinel lost and no failover is elected"))
        else:
            fine.append(shown)
    if findings:
        worst = "high" if any(severity == "high" for severity, _ in findings) else "medium"
        return Finding(
            worst,
            "; ".join(text for _, text in findings),
            "at least 3 Sentinels on separate machines, quorum a majority of them",
        )
    return Passed("; ".join(fine) or "it watches no primary")
