"""A frozen node (SIGSTOPped: the kernel still accepts TCP connections, nothing answers) is
named by `health`'s view as not answering, with the time it was actually given."""

import socket

from redkeep.redis.deployment import Deployment, Node, Role, Topology
from redkeep.redis.observe import ASK_TIMEOUT, observe
from redkeep.redis.target import Target


def test_a_node_that_accepts_connections_and_never_answers_is_not_reached():
    with socket.socket() as frozen:  # listens, never accepts: what a stopped process is
        frozen.bind(("127.0.0.1", 0))
        frozen.listen()
        port = frozen.getsockname()[1]
        target = Target("redis", host="127.0.0.1", port=port, username="u", password="p")
        deployment = Deployment(Topology.SENTINEL, (Node("redis-1", Role.REPLICA, target),))
        view = observe(deployment, "redkeep").nodes[0]
    assert not view.reached
    assert f"timed out after {ASK_TIMEOUT:g}s" in view.error, view.error
