"""The pure parts of rotation across nodes: comparing users, reading CONFIG GET replies, which
users a bundle keeps passwords of."""

import pytest
import yaml

from redkeep.actions.links import config_pairs
from redkeep.actions.rollback import same_user
from redkeep.actions.users import env_key
from redkeep.bundle import Bundle
from redkeep.errors import UsageError
from redkeep.redis.acl import AclUser


def user(*passwords: str, flags=("on",), commands="+@all") -> AclUser:
    return AclUser(frozenset(flags), passwords, commands, "~*", "&*")


def test_a_user_is_the_same_whatever_the_order_of_its_passwords():
    assert same_user(user("a", "b"), user("b", "a"))  # an undo may put a hash back last
    assert not same_user(user("a", "b"), user("a"))
    assert not same_user(user("a"), user("a", flags=("off",)))
    assert not same_user(user("a"), user("a", commands="-@all"))
    assert not same_user(user("a"), None) and same_user(None, None)


def test_config_get_replies_in_either_protocol():
    assert (
        config_pairs({"masteruser": "replication", "masterauth": "x"})["masteruser"]
        == "replication"
    )
    assert config_pairs(["masteruser", "replication", "masterauth", "x"]) == {
        "masteruser": "replication",
        "masterauth": "x",
    }


@pytest.fixture
def bundle_of(tmp_path):
    def make(deployment: dict | None) -> Bundle:
        config = {"version": 1} | ({"deployment": deployment} if deployment else {})
        (tmp_path / "redkeep.yaml").write_text(yaml.safe_dump(config))
        return Bundle(tmp_path)

    return make


def test_the_deployment_users_exist_only_beyond_standalone(bundle_of):
    standalone = bundle_of(None)
    assert env_key(standalone, "app") == "REDIS_APP_PASSWORD"
    with pytest.raises(UsageError, match="'replication' is not one of them"):
        env_key(standalone, "replication")
    sentinel = bundle_of({"topology": "sentinel", "replicas": 1, "sentinels": 1})
    assert env_key(sentinel, "replication") == "REDIS_REPLICATION_PASSWORD"
    assert env_key(sentinel, "sentinel") == "REDIS_SENTINEL_PASSWORD"
    with pytest.raises(UsageError, match="'default' is not one of them"):
        env_key(sentinel, "default")
