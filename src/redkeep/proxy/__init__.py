"""The network security proxy: asyncio server, policy, RESP request scanner, metrics, log."""
