"""`users list --all-nodes` on a real Sentinel group and a real Cluster (tests/hanodes.py): every
data node and Sentinel is read, a user changed on one node only (ACL SETUSER there) is named
with the nodes that have each version, a stopped node is named, and no password or hash is
ever printed. Judged against what each node's ACL says to a plain redis-py client.

The stopped node is the module's last test: it leaves the cluster's replica down.
"""

import json

import redis

from tests.conftest import ACL_USERS, run_redkeep
from tests.hanodes import PASSWORDS, HADeployment
from tests.jsonshape import problems, shape

ENV = {"REDIS_PASSWORD": PASSWORDS["admin"]}
PLANTED = "planted-password-0123456789"


def users_list(deployment: HADeployment, seed: str, *args: str):
    return run_redkeep(
        "users", "list", "--all-nodes", "--url", deployment.url(seed),
        *deployment.tls_options(), *args, env=ENV,
    )  # fmt: skip


def listed(deployment: HADeployment, seed: str) -> tuple[int, dict, str]:
    result = users_list(deployment, seed, "--json")
    document = json.loads(result.stdout)
    assert problems(document, shape("users list: a deployment")) == []
    return result.returncode, document, result.stdout + result.stderr


def by_port(document: dict) -> dict[int, dict]:
    return {int(node["address"].rpartition(":")[2]): node for node in document["nodes"]}


def acl_users(deployment: HADeployment, name: str) -> set[str]:
    with deployment.client(name) as client:
        return set(client.execute_command("ACL", "USERS"))


def no_secrets(text: str) -> None:
    for secret in [*PASSWORDS.values(), PLANTED]:
        assert secret not in text
    assert not any(len(word) == 64 and word.isalnum() for word in text.replace('"', " ").split())


def test_a_sentinel_group_is_listed_node_by_node_and_agrees(sentinels):
    code, document, text = listed(sentinels, "sentinel-0")
    assert code == 0, text
    assert document["topology"] == "sentinel" and document["consistent"] is True
    nodes = by_port(document)
    roles = {name: nodes[server.tls_port]["role"] for name, server in
             {**sentinels.nodes, **sentinels.sentinels}.items()}  # fmt: skip
    assert roles == {"redis-0": "primary", "redis-1": "replica", "sentinel-0": "sentinel",
                     "sentinel-1": "sentinel", "sentinel-2": "sentinel"}  # fmt: skip
    assert all(node["read"] for node in document["nodes"])
    groups = {
        "data": acl_users(sentinels, "redis-0"),
        "sentinel": acl_users(sentinels, "sentinel-0"),
    }
    for group, names in groups.items():
        assert {user["name"] for user in document["users"] if user["group"] == group} == names
    assert all(user["same"] and len(user["variants"]) == 1 for user in document["users"])
    no_secrets(text)


def test_a_user_changed_on_one_node_is_named_with_its_nodes(sentinels):
    replica = sentinels.client("redis-1")
    odd_sentinel = sentinels.client("sentinel-2")
    replica.execute_command("ACL", "SETUSER", "app", f">{PLANTED}")
    odd_sentinel.execute_command("ACL", "SETUSER", "intruder", "on", f">{PLANTED}", "+@all")
    try:
        code, document, text = listed(sentinels, "sentinel-0")
        table = users_list(sentinels, "sentinel-0")
    finally:
        replica.execute_command("ACL", "SETUSER", "app", f"<{PLANTED}")
        odd_sentinel.execute_command("ACL", "DELUSER", "intruder")
        replica.close()
        odd_sentinel.close()
    assert code == 1, text
    assert document["consistent"] is False
    users = {(user["name"], user["group"]): user for user in document["users"]}
    app = users["app", "data"]
    assert (app["same"], app["differs_in"]) == (False, ["passwords"])
    counts = {
        int(node.rpartition(":")[2]): variant["password_count"]
        for variant in app["variants"]
        for node in variant["nodes"]
    }
    ports = {name: server.tls_port for name, server in sentinels.nodes.items()}
    assert counts == {ports["redis-0"]: 1, ports["redis-1"]: 2}
    intruder = users["intruder", "sentinel"]
    assert intruder["differs_in"] == ["presence"]
    present = [variant for variant in intruder["variants"] if variant["present"]]
    assert [int(node.rpartition(":")[2]) for node in present[0]["nodes"]] == [
        sentinels.sentinels["sentinel-2"].tls_port
    ]
    assert users["admin", "data"]["same"] and users["admin", "sentinel"]["same"]
    # The table says it too, and stderr names the user and the odd node.
    assert table.returncode == 1 and "DIFFERS" in table.stdout
    line = next(line for line in table.stderr.splitlines() if "'app' differs" in line)
    assert "'app' differs between the data nodes (passwords): one version on " in line
    assert line.endswith(f"; another on 127.0.0.1:{ports['redis-1']}")
    no_secrets(text + table.stdout + table.stderr)


def test_a_cluster_is_listed_node_by_node_and_a_changed_user_named(cluster):
    code, document, text = listed(cluster, "redis-0")
    assert code == 0, text
    assert document["topology"] == "cluster" and len(document["nodes"]) == len(cluster.nodes)
    assert sorted(node["role"] for node in document["nodes"]) == ["primary"] * 3 + ["replica"]
    odd = cluster.client("redis-2")
    odd.execute_command("ACL", "SETUSER", "app", "~other:*")
    try:
        code, document, text = listed(cluster, "redis-0")
    finally:
        odd.execute_command("ACL", "SETUSER", "app", "resetkeys", "~app:*")
        odd.close()
    assert code == 1, text
    (app,) = [user for user in document["users"] if user["name"] == "app"]
    assert app["differs_in"] == ["key patterns"]
    majority, minority = app["variants"]
    assert len(majority["nodes"]) == 3 and majority["keys"] == "~app:*"
    port = cluster.nodes["redis-2"].tls_port
    assert [int(node.rpartition(":")[2]) for node in minority["nodes"]] == [port]
    assert set(minority["keys"].split()) == {"~app:*", "~other:*"}
    no_secrets(text)


def test_a_seed_that_cannot_be_reached_exits_3(cluster):
    result = run_redkeep(
        "users", "list", "--all-nodes", "--url", "rediss://admin@localhost:1",
        *cluster.tls_options(), env=ENV,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1 and "localhost:1" in result.stderr


def test_a_stopped_node_is_named_and_the_exit_status_is_3(cluster):
    replica = cluster.nodes["redis-3"]
    replica.stop()
    port = replica.tls_port
    # Asked before the cluster marks it failed (listed, refused) or after (skipped): named.
    code, document, text = listed(cluster, "redis-0")
    assert code == 3, text
    assert document["consistent"] is False
    (down,) = [node for node in document["nodes"] if not node["read"]]
    assert int(down["address"].rpartition(":")[2]) == port and down["error"]
    assert all(node["read"] for node in document["nodes"] if node is not down)
    table = users_list(cluster, "redis-0")
    assert table.returncode == 3
    assert f":{port}" in table.stderr and "could not be read" in table.stderr


def test_one_server_is_listed_as_before(redis_factory):
    """Without --all-nodes, --url names one server: the list of its users, as documented."""
    server = redis_factory(ACL_USERS)
    result = run_redkeep(
        "users", "list", "--json", "--url", f"redis://admin@127.0.0.1:{server.port}",
        env={"REDIS_PASSWORD": "admin-secret"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    users = json.loads(result.stdout)
    assert problems(users, shape("users list: one server")) == []
    with redis.Redis(port=server.port, username="admin", password="admin-secret") as client:
        assert {user["name"] for user in users} == {
            name.decode() for name in client.execute_command("ACL", "USERS")
        }


def test_user_names_are_shown_never_run_by_the_terminal(redis_factory):
    """Names come from a server we may not control: ESC, BEL and bidi overrides are shown
    escaped, rich markup is shown as text, a 5000-character name is cut (--json keeps all)."""
    server = redis_factory(ACL_USERS)
    hostile = ["\x1b]0;pwned\x07title", "[red]markup", "admin\u202egnp.exe", "x" * 5000]
    with redis.Redis(port=server.port, username="admin", password="admin-secret") as client:
        for name in hostile:
            client.execute_command("ACL", "SETUSER", name, "on", ">pw", "+ping")
    url = f"redis://admin@127.0.0.1:{server.port}"
    env = {"REDIS_PASSWORD": "admin-secret"}
    table = run_redkeep("users", "list", "--url", url, env=env)
    assert table.returncode == 0, table.stderr
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in table.stdout
    shown = table.stdout.replace("\n", "")  # the name column folds long names
    assert "\\x1b]0;pwned\\x07title" in shown and "admin\\u202egnp.exe" in shown
    assert "[red]markup" in shown
    assert "x" * 5000 not in shown and "(5000 characters)" in shown
    whole = run_redkeep("users", "list", "--json", "--url", url, env=env)
    assert set(hostile) <= {user["name"] for user in json.loads(whole.stdout)}
