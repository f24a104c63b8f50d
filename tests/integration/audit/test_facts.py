"""Every fact a check reads is one `gather` produces: audited as an administrator over TLS
(with the Lua probe), no check is left with a fact nobody read or data it did not expect."""

import dataclasses

from redkeep.audit.facts import Facts, Unavailable, gather
from redkeep.audit.report import run_checks
from redkeep.redis.target import parse_url
from tests.conftest import ACL_USERS
from tests.servers import tls_lines


def test_gather_reads_every_fact_the_checks_use(tls_server_build, server_factory, pki):
    server = server_factory(tls_server_build, [*ACL_USERS, *tls_lines(pki.directory)], tls=True)
    target = dataclasses.replace(
        parse_url(f"rediss://admin:admin-secret@localhost:{server.tls_port}"),
        tls_ca=pki.ca_cert,
        tls_cert=pki.client_cert(),
        tls_key=pki.client_key(),
    )
    facts = gather(target, timeout=5.0, lua_probe=True)
    not_read = [
        field.name
        for field in dataclasses.fields(Facts)
        if isinstance(getattr(facts, field.name), Unavailable)
        and getattr(facts, field.name).reason.endswith("was not read")
    ]
    assert not_read == []
    report = run_checks(facts, accepted=set())
    blind = [
        (item.id, item.reason)
        for item in report.could_not_verify
        if "was not read" in item.reason or "unexpected data" in item.reason
    ]
    assert blind == []
    # The certificate check names the host the handshake asked for (not one read back
    # from the masked URL): the test PKI's server certificate is for localhost.
    tls_07 = next(item for item in report.findings if item.id == "TLS-07")
    assert "subjectAltName" not in tls_07.evidence
    assert facts.target.host == "localhost"
