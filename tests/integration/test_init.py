"""`redkeep init` on existing directories: what it keeps, what it refuses, what it repairs."""

import datetime as dt
import stat

from redkeep.bundle import Bundle
from redkeep.fsutil import mode_of
from redkeep.pki import issue
from redkeep.pki.files import write_pair
from redkeep.render.acl import hashes_in, password_hash
from tests.conftest import run_redkeep


def make(tmp_path, name="b"):
    root = tmp_path / name
    result = run_redkeep("init", root)
    assert result.returncode == 0, result.stderr
    return Bundle(root)


def test_force_refuses_a_ca_certificate_without_its_key(tmp_path, redis_binary):
    bundle = make(tmp_path)
    bundle.tls.ca_key.unlink()
    before = {path.name: path.read_bytes() for path in bundle.tls.directory.iterdir()}
    result = run_redkeep("init", bundle.root, "--force")
    assert result.returncode == 2
    assert f"{bundle.tls.ca_cert} exists but {bundle.tls.ca_key} does not" in result.stderr
    assert {path.name: path.read_bytes() for path in bundle.tls.directory.iterdir()} == before


def test_force_reissues_a_leaf_the_ca_did_not_sign(tmp_path, redis_binary):
    bundle = make(tmp_path)
    now = dt.datetime.now(dt.UTC)
    stranger = issue.make_ca("Stranger", "ecdsa-p256", 10, now)
    cert, key = issue.make_client_cert(*stranger, "x", "ecdsa-p256", 10, now)
    write_pair(bundle.tls.client_cert(), bundle.tls.client_key(), cert, key)
    server_before = bundle.tls.server_cert.read_bytes()
    result = run_redkeep("init", bundle.root, "--force")
    assert result.returncode == 0, result.stderr
    assert "issued client certificate" in result.stdout
    assert bundle.tls.server_cert.read_bytes() == server_before  # still good: kept
    verify = run_redkeep("certs", "verify", "--dir", bundle.root)
    assert verify.returncode == 0, verify.stdout


def test_force_keeps_password_hashes_already_in_the_acl_file(tmp_path, redis_binary):
    bundle = make(tmp_path)
    old_backup = bundle.password("backup")
    lines = bundle.env_path.read_text().splitlines()
    bundle.env_path.write_text(
        "\n".join(line for line in lines if not line.startswith("REDIS_BACKUP_PASSWORD=")) + "\n"
    )
    result = run_redkeep("init", bundle.root, "--force")
    assert result.returncode == 0, result.stderr
    assert "stay valid next to the new ones" in result.stdout
    new_backup = bundle.password("backup")
    assert new_backup != old_backup
    hashes = hashes_in(bundle.acl_path.read_text())
    assert hashes["backup"] == [password_hash(new_backup), password_hash(old_backup)]
    assert hashes["admin"] == [password_hash(bundle.password("admin"))]


def test_init_into_an_existing_shared_directory_keeps_its_mode(tmp_path, redis_binary):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    result = run_redkeep("init", shared)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert mode_of(shared / ".env") == 0o600


def test_unusable_files_give_one_line(tmp_path, redis_binary):
    bundle = make(tmp_path)
    bundle.env_path.unlink()
    bundle.env_path.mkdir(mode=0o700)
    result = run_redkeep("users", "list", "--dir", bundle.root)
    assert result.returncode == 1
    assert result.stderr.strip() == f"redkeep: error: {bundle.env_path}: Is a directory"


def test_world_readable_secrets_are_warned_about(tmp_path, redis_binary):
    bundle = make(tmp_path)
    bundle.env_path.chmod(0o644)
    result = run_redkeep("config", "show", "--dir", bundle.root)
    assert result.returncode == 0
    assert (
        f"warning: {bundle.env_path} is readable by others (mode 644); chmod 600 it"
        in result.stderr
    )
