"""Whom the proxy follows: more than half of the configured Sentinels must name the primary,
counted over every configured Sentinel, not over those that answered (an attack review had one
reachable Sentinel out of three move the proxy to a hostile primary)."""

from redkeep.proxy.sentinel import is_majority


def test_one_answering_sentinel_of_three_does_not_decide():
    assert not is_majority(1, 3)  # two are down: the one that answers is not a majority
    assert is_majority(2, 3)


def test_a_single_configured_sentinel_decides_alone_and_ties_do_not():
    assert is_majority(1, 1)
    assert not is_majority(2, 4)
    assert is_majority(3, 5)
