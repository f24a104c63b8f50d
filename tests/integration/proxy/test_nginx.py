"""`redkeep render nginx`: the config passes `nginx -t`, and real nginx serves it."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import run_redkeep
from tests.integration.proxy.conftest import closed_without_reply
from tests.servers import free_port

NGINX_HINT = "install it with `make setup` (apt-get install nginx libnginx-mod-stream)"


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None or not Path("/usr/lib/nginx/modules/ngx_stream_module.so").exists():
        pytest.fail(f"nginx with the stream module not found; {NGINX_HINT}", pytrace=False)
    return found


@pytest.fixture
def nginx_in_front(mtls_redis, pki, tmp_path):
    """nginx with the rendered config: TLS + client certs, allowlist, 2 connections per IP,
    mutual TLS to a TLS-only Redis."""
    binary = nginx_binary()
    port = free_port()
    conf = tmp_path / "redis-stream.conf"
    rendered = run_redkeep(
        "render", "nginx",
        f"--listen=127.0.0.1:{port}",
        f"--upstream=127.0.0.1:{mtls_redis.tls_port}",
        f"--tls-cert={pki.server_cert}", f"--tls-key={pki.server_key}",
        f"--tls-client-ca={pki.ca_cert}",
        f"--upstream-tls-ca={pki.ca_cert}",
        f"--upstream-tls-cert={pki.client_cert()}", f"--upstream-tls-key={pki.client_key()}",
        "--upstream-tls-name=localhost",
        "--allow=127.0.0.1/32", "--max-conns-per-ip=2", "--max-conns=100",
        f"--log-dir={tmp_path}", f"--pid-file={tmp_path / 'nginx.pid'}", f"--out={conf}",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    errors = str(tmp_path / "startup-error.log")
    check = subprocess.run(
        [binary, "-t", "-c", str(conf), "-e", errors], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr
    process = subprocess.Popen(
        [binary, "-c", str(conf), "-e", errors, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)
    yield port, tmp_path
    process.terminate()
    process.wait(timeout=10)


def tls_client(pki, port: int, with_cert: bool = True) -> redis.Redis:
    return redis.Redis(
        host="localhost",
        port=port,
        ssl=True,
        ssl_ca_certs=str(pki.ca_cert),
        ssl_certfile=str(pki.client_cert()) if with_cert else None,
        ssl_keyfile=str(pki.client_key()) if with_cert else None,
        username="admin",
        password="admin-secret",
        socket_timeout=5,
    )


def test_nginx_serves_the_rendered_config(nginx_in_front, pki):
    port, logs = nginx_in_front
    client = tls_client(pki, port)
    assert client.set("through", "nginx") and client.get("through") == b"nginx"
    client.close()
    with pytest.raises(redis.ConnectionError):
        tls_client(pki, port, with_cert=False).ping()
    outsider = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
    assert closed_without_reply(outsider)
    # limit_conn: two open connections from one address, the third is closed.
    first, second = tls_client(pki, port), tls_client(pki, port)
    assert first.ping() and second.ping()
    with pytest.raises(redis.ConnectionError):
        tls_client(pki, port).ping()
    first.close()
    second.close()
    time.sleep(0.3)
    access = (logs / "redis-access.log").read_text().splitlines()
    assert any('"status":200' in line and '"tls":"TLSv1.3"' in line for line in access)
    assert any('"status":403' in line for line in access)  # the allowlist
    assert any('"status":503' in line for line in access)  # limit_conn


def test_plain_nginx_config_passes_nginx_t(plain_redis, tmp_path):
    """Without TLS anywhere, with IPv6 addresses and a deny list."""
    conf = tmp_path / "plain.conf"
    rendered = run_redkeep(
        "render", "nginx", "--listen=[::1]:6390", f"--upstream=127.0.0.1:{plain_redis.port}",
        "--deny=10.0.0.0/8", "--allow=::1/128", f"--log-dir={tmp_path}",
        f"--pid-file={tmp_path / 'n.pid'}", f"--out={conf}",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    text = conf.read_text()
    assert "listen [::1]:6390;" in text and "ssl_certificate" not in text
    check = subprocess.run(
        [nginx_binary(), "-t", "-c", str(conf), "-e", str(tmp_path / "e.log")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr


def test_without_an_upstream_ca_or_with_a_wildcard_ipv6_listen_nginx_still_agrees(pki, tmp_path):
    """No --upstream-tls-ca: Redis is checked against the system CAs (as the proxy does);
    `[::]` listens for IPv4 too (as the proxy does)."""
    conf = tmp_path / "wide.conf"
    rendered = run_redkeep(
        "render", "nginx", "--listen=[::]:6391", "--upstream=127.0.0.1:6380",
        f"--upstream-tls-cert={pki.client_cert()}", f"--upstream-tls-key={pki.client_key()}",
        "--upstream-tls-name=localhost", f"--log-dir={tmp_path}",
        f"--pid-file={tmp_path / 'n.pid'}", f"--out={conf}",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    text = conf.read_text()
    assert "listen [::]:6391 ipv6only=off;" in text
    assert "proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;" in text
    check = subprocess.run(
        [nginx_binary(), "-t", "-c", str(conf), "-e", str(tmp_path / "e.log")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr


def test_to_stdout_and_an_address_as_tls_name_is_refused(plain_redis):
    result = run_redkeep("render", "nginx", f"--upstream=127.0.0.1:{plain_redis.port}")
    assert result.returncode == 0 and "proxy_pass 127.0.0.1:" in result.stdout
    refused = run_redkeep(
        "render", "nginx", "--upstream=127.0.0.1:6380", "--upstream-tls-ca=/etc/hosts"
    )
    assert refused.returncode == 2
    assert "--upstream-tls-name" in refused.stderr and "\n" not in refused.stderr.strip()
