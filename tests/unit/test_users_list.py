"""Comparing users between nodes (`actions/users_list.py`) on captured ACL states."""

from redkeep.actions.users_list import NodeUsers, compare
from redkeep.redis.acl import AclUser
from redkeep.render.acl import password_hash

APP = AclUser(frozenset({"on"}), (password_hash("one"),), "-@all +get +set", "~app:*", "")


def node(name: str, **users: AclUser | None) -> NodeUsers:
    return NodeUsers(name, "replica", f"{name}:1", {k: v for k, v in users.items() if v})


def test_the_same_rules_in_another_order_are_the_same_user():
    reordered = AclUser(APP.flags, APP.passwords, "-@all +set +get", "~app:*", "")
    (app,) = compare([node("a", app=APP), node("b", app=reordered)], "data", {})
    assert app.same and app.variants[0].nodes == ("a", "b")


def test_the_version_most_nodes_have_comes_first_and_the_difference_is_named():
    rotated = AclUser(APP.flags, (*APP.passwords, password_hash("two")), APP.commands, "~app:*", "")
    nodes = [node("a", app=rotated), node("b", app=APP), node("c", app=APP)]
    (app,) = compare(nodes, "data", {"app": password_hash("one")})
    assert (app.same, app.differs_in) == (False, ("passwords",))
    assert [variant.nodes for variant in app.variants] == [("b", "c"), ("a",)]
    assert [variant.user.password_count for variant in app.variants] == [1, 2]
    assert [variant.env_password for variant in app.variants] == [True, True]


def test_a_missing_user_and_a_tie_keep_the_first_nodes_version_first():
    users = compare([node("a", app=APP), node("b", app=None)], "sentinel", {})
    (app,) = users
    assert app.differs_in == ("presence",)
    assert [variant.nodes for variant in app.variants] == [("a",), ("b",)]
    assert app.variants[1].user is None and app.variants[1].to_json()["present"] is False


def test_a_node_not_read_is_left_out_of_the_comparison():
    down = NodeUsers("c", "replica", "c:1", None, "cannot connect")
    (app,) = compare([node("a", app=APP), node("b", app=APP), down], "data", {})
    assert app.same and app.variants[0].nodes == ("a", "b")
