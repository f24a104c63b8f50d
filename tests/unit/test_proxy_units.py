"""Proxy units: the RESP request scanner (property tests), policy, nginx rendering."""

import contextlib
import ipaddress
import time

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redkeep.config.schema import ProxySettings
from redkeep.errors import UsageError
from redkeep.proxy.config import build_config
from redkeep.proxy.policy import (
    Admission,
    Policy,
    TokenBucket,
    client_address,
    networks,
    parse_commands,
)
from redkeep.proxy.resp import (
    POISON,
    ProtocolViolation,
    RequestScanner,
    split_inline,
    strict_int,
)
from redkeep.render.nginx import render_nginx

DENIED, DENIED_SUB = parse_commands(["FLUSHALL", "CONFIG", "SCRIPT KILL"])


def scanner(**changes) -> RequestScanner:
    options = {
        "denied_commands": DENIED,
        "denied_subcommands": DENIED_SUB,
        "unauthenticated_limits": False,
    }
    return RequestScanner(Policy(**(options | changes)), time.monotonic)


def frame(*args: bytes) -> bytes:
    return hiredis.pack_command(args)


def test_strict_lengths_follow_redis():
    assert strict_int(b"12") == 12 and strict_int(b"0") == 0 and strict_int(b"-1") == -1
    for bad in (b"+3", b"03", b" 3", b"3 ", b"", b"-0", b"1_0", b"x"):
        assert strict_int(bad) is None, bad


def test_inline_split_like_sdssplitargs():
    assert split_inline(b"set \"a\\x41\\n\" 'b\\'c'") == [b"set", b"aA\n", b"b'c"]
    assert split_inline(b'fl"ushall"') == [b"flushall"]  # quotes may start mid-argument
    assert split_inline(b'"unbalanced') is None
    assert split_inline(b'"a"b') is None  # a closing quote must end the argument
    assert split_inline(b"  ") == []
    assert split_inline(b"get a\0flushall") == [b"get", b"a"]  # C strings end at NUL


def test_refused_frames_are_replaced_in_place_and_the_rest_passes():
    scan = scanner()
    data = frame(b"GET", b"k") + frame(b"flushall") + frame(b"SCRIPT", b"KILL") + frame(b"PING")
    out = scan.feed(data)
    assert out.startswith(frame(b"GET", b"k")) and out.endswith(frame(b"PING"))
    assert b"FLUSHALL is denied" in out and b"SCRIPT KILL is denied" in out
    assert scan.commands == 4 and scan.refused == {"command": 2}


def test_large_values_stream_without_being_held():
    scan = scanner()
    value = b"v" * 1_000_000
    data = frame(b"SET", b"k", value)
    forwarded = b"".join(scan.feed(data[i : i + 65536]) for i in range(0, len(data), 65536))
    assert forwarded == data
    assert len(scan.pending) < 64


def test_rate_limit_refuses_beyond_the_bucket():
    clock = [100.0]
    scan = RequestScanner(Policy(cmd_rate=3, unauthenticated_limits=False), lambda: clock[0])
    out = scan.feed(frame(b"PING") * 5)
    assert out.count(b"rate limit") == 2 and out.count(frame(b"PING")) == 3
    clock[0] += 1.0
    assert scan.feed(frame(b"PING")) == frame(b"PING")


def test_login_user_is_kept_and_the_password_is_not():
    scan = scanner(unauthenticated_limits=True)
    scan.feed(frame(b"HELLO", b"3", b"AUTH", b"app", b"s3cret"))
    assert scan.user == "app" and scan.logged_in
    assert "s3cret" not in repr(vars(scan))


def test_hello_options_are_read_in_order_as_redis_does():
    for args, user in [
        ((b"HELLO", b"3", b"SETNAME", b"auth", b"AUTH", b"app", b"pw"), "app"),
        ((b"HELLO", b"3", b"AUTH", b"a", b"pw", b"SETNAME", b"n", b"AUTH", b"b", b"pw"), "b"),
        ((b"hello", b"2", b"auth", b"app", b"pw"), "app"),
        ((b"HELLO", b"3", b"SETNAME", b"AUTH", b"x", b"y"), None),  # 'x': a syntax error
        ((b"HELLO", b"3", b"SETNAME"), None),
    ]:
        scan = scanner(unauthenticated_limits=True)
        scan.feed(frame(*args))
        assert scan.user == user, args
        assert scan.logged_in is (user is not None)


def test_unauthenticated_caps():
    scan = scanner(unauthenticated_limits=True)
    try:
        scan.feed(frame(b"GET", b"x" * 20000))
        raise AssertionError("a 20 KB argument before AUTH passed")
    except ProtocolViolation as violation:
        assert "unauthenticated bulk length" in str(violation)
    scan = scanner(unauthenticated_limits=True)
    try:
        scan.feed(frame(b"MSET", *[b"k"] * 10))
        raise AssertionError("11 arguments before AUTH passed")
    except ProtocolViolation as violation:
        assert "unauthenticated multibulk length" in str(violation)


def test_no_caps_when_redis_does_not_ask_for_auth():
    """A default user without password is logged in from the first byte: Redis applies no
    caps to it, so neither may the proxy."""
    scan = RequestScanner(Policy(unauthenticated_limits=True), time.monotonic, auth_required=False)
    data = frame(b"MSET", *[b"k%d" % i for i in range(20)]) + frame(b"SET", b"big", b"v" * 400_000)
    assert b"".join(scan.feed(data[i : i + 7000]) for i in range(0, len(data), 7000)) == data
    assert scan.commands == 2


def test_caps_keep_the_fast_path_for_frames_within_them():
    """Before AUTH, a pipeline of small frames is forwarded by the fast path, untouched."""
    scan = scanner(unauthenticated_limits=True)

    def exact(_data):
        raise AssertionError("the exact path was taken")

    scan._scan = exact
    pipeline = (frame(b"SET", b"k", b"v") + frame(b"GET", b"k")) * 16
    assert scan.feed(pipeline) == pipeline
    assert scan.commands == 32


NUL_SPELLINGS = [
    frame(b"FLUSHALL\0x"),
    frame(b"flushall\0"),
    frame(b"FlushAll\0\r\n*1"),
    frame(b"SCRIPT", b"KILL\0n"),
    frame(b"script", b"kill\0\0"),
    frame(b"SCRIPT\0x", b"KILL"),
    frame(b"SCRIPT\0", b"LOAD", b"return 1"),  # a denied container with NUL: any sub is suspect
    frame(b"CONFIG|SET", b"maxmemory", b"1"),  # deny entries are names, never 'a|b' commands
    b'"FLUSHALL\\x00n"\r\n',  # inline, the NUL from an escape
    b"FLUSHALL\0 x\r\n",  # inline, a raw NUL ends the line's C string
    frame(b"FLUSHALL\0" + b"p" * 200),  # a long name, judged by its beginning
]


def test_a_name_with_a_nul_is_judged_by_what_redis_may_run():
    for data in NUL_SPELLINGS:
        for size in (len(data), 3):  # whole, and split into 3-byte reads
            scan = scanner()
            out = b"".join(scan.feed(data[i : i + size]) for i in range(0, len(data), size))
            if b"CONFIG|SET" in data:
                assert scan.refused == {}, data  # 'config|set' runs nothing: it may pass
                continue
            assert scan.refused == {"command": 1}, data
            assert b"is denied by the redkeep proxy" in out and b"\0" not in out, data


def test_deny_entries_spelt_with_a_pipe_mean_the_subcommand():
    denied, denied_sub = parse_commands(["CONFIG|SET", "acl|setuser"])
    assert denied == frozenset() and denied_sub == {b"config": {b"set"}, b"acl": {b"setuser"}}
    scan = RequestScanner(
        Policy(denied_subcommands=denied_sub, unauthenticated_limits=False), time.monotonic
    )
    out = scan.feed(frame(b"config", b"set", b"maxmemory", b"1") + frame(b"CONFIG", b"GET", b"x"))
    assert scan.refused == {"command": 1} and out.endswith(frame(b"CONFIG", b"GET", b"x"))


# A vocabulary that reaches the interesting states: names the policy refuses, logins,
# fragments of headers, inline lines, quotes, oversized and negative lengths, garbage.
TOKENS = st.sampled_from(
    [
        frame(b"GET", b"k"),
        frame(b"flushall"),
        frame(b"CONFIG", b"SET", b"dir", b"/"),
        frame(b"script", b"kill"),
        frame(b"AUTH", b"app", b"pw"),
        b"flushall\r\n",
        b'fl"ushall"\r\n',
        b"PING\r\n",
        b"*2\r\n$3\r\nGET\r\n",
        b"$8\r\nflushall\r\n",
        b"*1\r\n$-1\r\n",
        b"*99999999999\r\n",
        b"*1\r\n$999999999999\r\n",
        b"*0\r\n",
        b"*-1\r\n",
        b"*1\rX$8\r\nflushall\r\n",
        b"\r\n",
        b'"\r\n',
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$70000\r\n",
        b"x" * 70000,
        # RESP3 types and payload ends that hiredis reads differently from Redis.
        b"~2\r\n$3\r\nfoo\r\n$8\r\nflushall\r\n",
        b"|1\r\n$1\r\na\r\n$1\r\nb\r\n",
        b">1\r\n$8\r\nflushall\r\n",
        b"%1\r\n$1\r\na\r\n$8\r\nflushall\r\n",
        b"*2\r\n+GET\r\n$1\r\nk\r\n",
        b"*1\r\n$4\r\nPINGXY",
        b"*1\r\n$4\r\nPING\rX",
        b"\0",
        # NUL and control bytes in names and subcommands (Redis 7.0 may cut a name at a NUL).
        *NUL_SPELLINGS,
        frame(b"KEYS\0\x01", b"*"),
        frame(b"\0FLUSHALL"),
        frame(b"FLUSH\0ALL"),
        frame(b"SCRIPT", b"\x7fKILL"),
        b"FLUSHALL\x00\r\n",
        b"KEYS\t*\x0b\r\n",
    ]
)
STREAMS = st.lists(st.one_of(TOKENS, st.binary(max_size=40)), max_size=8).map(b"".join)


def run_by_redis(data: bytes) -> tuple[list[bytes], int]:
    """What Redis runs of `data` (a forwarded stream), read the exact way (the scanner mirrors
    Redis): the command names up to the first request it refuses and closes for, and how many
    of them are denied ones."""
    scan = scanner()
    scan._fast = lambda _data: False  # the exact path only
    names: list[bytes] = []
    judge = scan._judge

    def record(args: list[bytes]) -> bytes | None:
        names.append(args[0].lower())
        return judge(args)

    scan._judge = record
    with contextlib.suppress(ProtocolViolation):
        scan.feed(data)
    return names, scan.refused.get("command", 0)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(STREAMS, st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_any_stream_any_split_same_result_and_no_denied_command_passes(stream, cuts):
    """10,000 generated streams: only ProtocolViolation escapes, how the bytes are split does
    not change what Redis runs of the forwarded bytes, and none of it is a denied command.

    (The bytes may differ: whole, a request Redis itself refuses can go through the fast path
    and get Redis' own error; split, the exact path refuses it for Redis. Either way Redis runs
    nothing from there on.)"""
    results = []
    for sizes in ([len(stream) or 1], cuts):
        scan, out, at, index = scanner(), [], 0, 0
        try:
            while at < len(stream):
                size = sizes[index % len(sizes)]
                out.append(scan.feed(stream[at : at + size]))
                at, index = at + size, index + 1
        except ProtocolViolation as violation:
            out.append(violation.forward + POISON)
        results.append(run_by_redis(b"".join(out)))
    assert results[0] == results[1]
    assert results[0][1] == 0


def test_ipv4_mapped_addresses_match_ipv4_networks():
    assert client_address("::ffff:10.1.2.3") == ipaddress.ip_address("10.1.2.3")
    assert client_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    policy = Policy(allow=networks(["10.0.0.0/8"]), deny=networks(["::ffff:10.9.0.0/112"]))
    assert policy.refusal(client_address("::ffff:10.1.2.3")) is None
    assert policy.refusal(client_address("::ffff:10.9.0.1")) == "denied"
    assert policy.refusal(client_address("192.168.1.1")) == "not_allowed"


def test_token_bucket_and_admission():
    bucket = TokenBucket(2, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert not bucket.take(0.1, count=2)  # a failed take takes nothing
    assert bucket.take(0.5)
    admission = Admission()
    policy = Policy(max_conns=2, max_conns_per_ip=1, allow=networks(["127.0.0.0/8"]))
    address, reason = admission.check(policy, "127.0.0.1", 0.0)
    assert reason is None
    admission.opened(address)
    assert admission.check(policy, "127.0.0.1", 0.0)[1] == "max_conns_per_ip"
    assert admission.check(policy, "127.0.0.3", 0.0)[1] is None
    admission.opened(client_address("127.0.0.3"))
    assert admission.check(policy, "127.0.0.4", 0.0)[1] == "max_conns"
    admission.closed(address)
    assert admission.check(policy, "127.0.0.1", 0.0)[1] is None


def test_nginx_config_says_what_it_cannot_enforce():
    proxy = ProxySettings(upstream="127.0.0.1:6380", tls=False, cmd_rate=100, deny=["10.9.0.0/16"])
    text = render_nginx(build_config(proxy, None, None))
    assert "load_module /usr/lib/nginx/modules/ngx_stream_module.so;" in text
    assert text.index("deny 10.9.0.0/16;") < text.index("allow 127.0.0.0/8;")
    assert text.rstrip().endswith("}") and "deny all;" in text
    for missing in ("command rate limit (100", "new-connection rate", "FLUSHALL", "Prometheus"):
        assert missing in text
    assert "proxy_pass 127.0.0.1:6380;" in text


def test_what_hiredis_cannot_read_goes_the_exact_way():
    """A RESP3 map with a list key makes hiredis raise TypeError: no crash, exact path."""
    scan = scanner()
    data = frame(b"SET", b"k", b"v") + b"*1\r\n%1\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n"
    with contextlib.suppress(ProtocolViolation):
        out = scan.feed(data)
        assert out.startswith(frame(b"SET", b"k", b"v"))
    assert scan.commands >= 1


class NoHiredis:
    """A reader that fails the test if the scanner hands it anything."""

    def feed(self, data: bytes) -> None:
        raise AssertionError(f"hiredis was fed {data[:40]!r}")


def test_large_aggregate_counts_never_reach_hiredis():
    """hiredis makes an N-slot list on reading `*N`; freeing one that never filled took 5 s
    for N = 2**31 - 1. Such counts go the exact way, which allocates nothing."""
    for data in (
        b"*2147483647\r\n",
        frame(b"GET", b"k") + b"*1000\r\n$3\r\nGET\r\n",
        b"*1\r\n~999999999\r\n",
        b"*2\r\n$3\r\nGET\r\n%999999\r\n",
        b"*1\r\n*1\r\n*1\r\n>123456\r\n",
    ):
        scan = scanner()
        scan._reader = NoHiredis()
        # Redis refuses some of these too; what matters is that hiredis never saw them.
        with contextlib.suppress(ProtocolViolation):
            scan.feed(data)
    small = frame(*[b"k"] * 99)  # 99 arguments: still the fast path
    scan = scanner()
    assert scan.feed(small) == small and scan.commands == 1


def test_a_long_login_is_not_held_back():
    """A long password (or anything long in AUTH/HELLO) is not held: the proxy keeps at most a
    few hundred bytes of a login frame, however it arrives."""
    scan = scanner(unauthenticated_limits=False)
    data = frame(b"HELLO", b"3", b"AUTH", b"app", b"p" * 100_000, b"SETNAME", b"n")
    held = 0
    out = b""
    for i in range(0, len(data), 997):
        out += scan.feed(data[i : i + 997])
        held = max(held, len(scan.pending))
    assert out == data and held < 2048
    assert scan.user == "app"


def test_inline_lines_up_to_what_redis_may_accept_pass():
    """Redis refuses an inline line only with more than 64 KiB buffered and no end in sight,
    reading 16 KiB at a time: a 70 KiB line can run, so it must pass; 100 KiB cannot."""
    line = b"SET k " + b"v" * 70_000 + b"\r\n"
    scan = scanner()
    assert b"".join(scan.feed(line[i : i + 16384]) for i in range(0, len(line), 16384)) == line
    scan = scanner()
    try:
        for _ in range(0, 100_000, 16384):
            scan.feed(b"x" * 16384)
        raise AssertionError("100 KiB without a line end passed")
    except ProtocolViolation as violation:
        assert "too big inline request" in str(violation)


def test_a_change_of_redis_password_reaches_open_connections_as_in_redis():
    policy = Policy(unauthenticated_limits=True)
    required = RequestScanner(policy, time.monotonic, auth_required=True)
    open_one = RequestScanner(policy, time.monotonic, auth_required=False)
    assert required.limited and not open_one.limited
    for scan in (required, open_one):
        scan.upstream_changed(False)  # ACL SETUSER default nopass
    assert not required.limited and not open_one.limited
    for scan in (required, open_one):
        scan.upstream_changed(True)  # a password again
    # Redis: a connection opened without a password counts as logged in for good.
    assert required.limited and not open_one.limited


def test_a_bundle_proxy_uses_the_bundle_files_and_resolves_paths_against_the_bundle(tmp_path):
    from redkeep.bundle import Bundle  # noqa: PLC0415
    from redkeep.config.schema import Settings  # noqa: PLC0415

    files = Bundle(tmp_path).tls
    settings = Settings()
    config = build_config(settings.proxy, settings, tmp_path)
    assert (config.client_tls.cert, config.client_tls.key) == (files.server_cert, files.server_key)
    assert config.client_tls.client_ca == files.ca_cert
    upstream = config.upstream_tls
    assert (upstream.ca, upstream.cert, upstream.key) == (
        files.ca_cert,
        files.client_cert(),
        files.client_key(),
    )
    assert config.access_log == tmp_path / "run" / "proxy-access.log"
    given = ProxySettings(tls_cert="other/proxy.crt", tls_key="/etc/proxy.key")
    config = build_config(given, settings, tmp_path)
    assert config.client_tls.cert == tmp_path / "other" / "proxy.crt"
    assert config.client_tls.key.as_posix() == "/etc/proxy.key"
    outside = build_config(ProxySettings(upstream="127.0.0.1:6380", tls=False), None, None)
    assert outside.client_tls is None and outside.upstream_tls is None


def test_inline_arguments_end_where_redis_ends_them():
    assert split_inline(b"a\x0bb\tc") == [b"a\x0bb", b"c"]  # \v is inside, \t between
    assert split_inline(b'"\\x4g" \'a\\\\b\\\'c\' "\\q"') == [b"x4g", b"a\\\\b'c", b"q"]
    assert split_inline(b"'a'b") is None and split_inline(b'"a\\"') is None
    assert split_inline(b"x'a b'\t'c'") == [b"xa b", b"c"]


def test_sentinel_settings_make_a_follower_config_and_bad_combinations_are_refused(monkeypatch):
    monkeypatch.setenv("REDKEEP_SENTINEL_PASSWORD", "from-the-environment")
    proxy = ProxySettings(sentinels=["10.0.0.1:26379", "10.0.0.2:26379"], master_name="main")
    config = build_config(proxy, None, None, follow_sentinel=True)
    assert config.upstream is None
    assert config.sentinel.addresses == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (config.sentinel.master_name, config.sentinel.user) == ("main", "app")
    assert config.sentinel.password == "from-the-environment"
    assert "from-the-environment" not in repr(config)
    # Without follow_sentinel (an nginx config) there is nothing to connect to.
    with pytest.raises(UsageError, match="no upstream"):
        build_config(proxy, None, None)
    refused = {
        "no master name": ProxySettings(sentinels=["10.0.0.1:26379"]),
        "exclude each other": ProxySettings(
            sentinels=["10.0.0.1:26379"], master_name="main", upstream="10.0.0.5:6379"
        ),
        "needs --sentinel": ProxySettings(master_name="main", upstream="10.0.0.5:6379"),
    }
    for message, settings_ in refused.items():
        with pytest.raises(UsageError, match=message.replace("no master name", "--master-name")):
            build_config(settings_, None, None, follow_sentinel=True)
