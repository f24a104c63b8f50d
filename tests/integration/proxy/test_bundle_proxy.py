"""The proxy in a bundle: `redkeep up` runs it, `init` renders its nginx and compose forms."""

import subprocess

import redis
import yaml

from tests.conftest import run_redkeep
from tests.integration.conftest import start_bundle, stop_bundle
from tests.integration.proxy.test_nginx import nginx_binary


def test_up_runs_the_proxy_with_the_bundles_tls_and_policy(tmp_path, redis_binary):
    bundle = start_bundle(tmp_path / "stack")
    try:
        proxy = bundle.settings.proxy
        port = int(proxy.listen.rpartition(":")[2])
        tls = bundle.tls
        client = redis.Redis(
            host="localhost",
            port=port,
            ssl=True,
            ssl_ca_certs=str(tls.ca_cert),
            ssl_certfile=str(tls.client_cert()),
            ssl_keyfile=str(tls.client_key()),
            username="app",
            password=bundle.password("app"),
        )
        assert client.set("via", "proxy") and client.get("via") == b"proxy"
        try:
            client.flushall()
            raise AssertionError("FLUSHALL passed the bundle's proxy")
        except redis.ResponseError as error:
            assert "denied by the redkeep proxy policy" in str(error)
        client.close()
        assert (bundle.run_dir / "proxy.pid").exists()
        access_log = bundle.root / "run" / "proxy-access.log"
        assert access_log.stat().st_mode & 0o077 == 0
        assert bundle.password("app") not in access_log.read_text()
    finally:
        down = run_redkeep("down", bundle.root)
        stop_bundle(bundle)
    assert "stopped the proxy" in down.stdout
    assert not (bundle.run_dir / "proxy.pid").exists()


def test_init_writes_an_nginx_config_nginx_accepts_and_a_compose_proxy(tmp_path, redis_binary):
    root = tmp_path / "b"
    assert run_redkeep("init", root).returncode == 0
    conf = root / "nginx" / "redis-stream.conf"
    text = conf.read_text()
    assert "ssl_certificate ../tls/server.crt;" in text and "proxy_ssl_name localhost;" in text
    # Check it as is, with the logs and pid redirected to a writable place (beside it: the
    # bundle's files are named relative to its directory).
    local = text.replace("/var/log/nginx", str(tmp_path)).replace(
        "/run/nginx-redkeep.pid", str(tmp_path / "nginx.pid")
    )
    local_conf = root / "nginx" / "local.conf"
    local_conf.write_text(local)
    check = subprocess.run(
        [nginx_binary(), "-t", "-c", str(local_conf), "-e", str(tmp_path / "e.log")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    # The compose service's flags are the proxy's own: render them against this bundle.
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    command = compose["services"]["proxy"]["command"]
    assert command[0] == "proxy"
    flags = [flag.replace("/bundle", str(root)) for flag in command[1:]]
    rendered = run_redkeep("render", "nginx", *flags)
    assert rendered.returncode == 0, rendered.stderr
    assert "proxy_pass redis:" in rendered.stdout and "allow 172.16.0.0/12;" in rendered.stdout
