"""Talking to Redis: where it is, how to reach it, and why that failed.

    target.py      Target, ConnectionOptions, URLs, HOST:PORT, password files, resolve_target
    deployment.py  a deployment's nodes and roles; every_node / primary / one_per_shard
    discover.py    one live node -> its whole deployment (Cluster, Sentinel, replication)
    tls.py         the one TLS client context (raw sockets, probes, redis-py, the proxy)
    explain.py     one-line errors with a kind (socket, TLS, WRONGPASS, NOAUTH, NOPERM ...)
    raw.py         RawConnection: RESP by hand, pipelines under a deadline, replication bytes
    client.py      a redis-py client built on the same context and explained the same way
    handshake.py   one TLS handshake: the certificate served, the version agreed
    acl.py         ACL GETUSER's reply (RESP2 or RESP3, 6.2 or 7.x) as one AclUser

Imports are absolute, so `import redis` in here is redis-py. Only client.py loads redis-py and
only handshake.py loads cryptography: the proxy and the exporter import the rest and stay
light. This file imports nothing, so `import redkeep.redis.target` costs only that module.
"""
