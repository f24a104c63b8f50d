"""TLS contexts of the proxy: the client side it terminates, the Redis side it opens."""

import ssl

from redkeep.proxy.config import ClientTLS, UpstreamTLS
from redkeep.redis.tls import client_context

VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
VERIFY = {"yes": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "no": ssl.CERT_NONE}


def client_side_context(settings: ClientTLS) -> ssl.SSLContext:
    """Server context for clients: TLS 1.2+ only, Redis' ciphers, client certs as configured."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = [VERSIONS[name] for name in settings.protocols]
    context.minimum_version = min(versions)
    context.maximum_version = max(versions)
    context.set_ciphers(settings.ciphers)  # TLS 1.3 suites: OpenSSL's defaults are all AEAD
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(str(settings.cert), str(settings.key))
    context.verify_mode = VERIFY[settings.auth_clients]
    if settings.client_ca is not None and settings.auth_clients != "no":
        context.load_verify_locations(cafile=str(settings.client_ca))
    return context


def upstream_context(settings: UpstreamTLS) -> ssl.SSLContext:
    """Client context towards Redis: verifies its certificate, presents ours for mutual TLS."""
    return client_context(settings.ca, settings.cert, settings.key)
