"""Judging a proxy's own view of the Sentinels against the live primary."""

from redkeep.actions.proxy_following import ProxyView, _judge, _same_address


def view(upstream="127.0.0.1:7001", known=True, answering=3) -> ProxyView:
    return ProxyView(upstream, known, answering, rounds_since_reload=1, reloads=0)


def test_a_proxy_on_the_live_primary_answered_by_a_majority_is_fine():
    assert _judge(view(), 3, ("localhost", 7001)) is None
    assert _judge(view(answering=2), 3, ("127.0.0.1", 7001)) is None


def test_a_proxy_the_sentinels_do_not_answer_is_named():
    assert "only 1 of the 3 Sentinels" in _judge(view(answering=1), 3, ("localhost", 7001))
    assert "only 2 of the 4 Sentinels" in _judge(view(answering=2), 4, None)


def test_a_proxy_on_another_server_or_none_is_named():
    assert "not to the primary localhost:7002" in _judge(view(), 3, ("localhost", 7002))
    assert "knows no primary" in _judge(view(known=False), 3, ("localhost", 7001))


def test_addresses_compare_loopback_names_alike_and_ports_exactly():
    assert _same_address("127.0.0.1:7001", "localhost", 7001)
    assert _same_address("[::1]:7001", "::1", 7001)
    assert not _same_address("127.0.0.1:17001", "localhost", 7001)
    assert not _same_address("10.0.0.5:7001", "localhost", 7001)
    assert not _same_address(None, "localhost", 7001)
