"""A bundle's deployment as it runs now: the nodes with their live roles, for the commands that
need "the primary now" (users, certs, backups) rather than the plan's initial roles."""

from redkeep.bundle import Bundle
from redkeep.redis.deployment import Deployment
from redkeep.redis.observe import DeploymentView, observe, with_live_roles


def observe_bundle(bundle: Bundle) -> DeploymentView:
    """What the bundle's nodes and Sentinels answer, asked as its read-only `exporter` user."""
    return observe(bundle.deployment("exporter"), bundle.settings.deployment.master_name)


def live_deployment(bundle: Bundle, role: str) -> Deployment:
    """The bundle's nodes reached as `role`, each with the role it has now: `.primary()` is the
    current primary of a sentinel deployment, `.one_per_shard()` each shard's current primary.
    A standalone bundle is returned as planned (one node, nothing to ask)."""
    deployment = bundle.deployment(role)
    if bundle.settings.deployment.topology == "standalone":
        return deployment
    return with_live_roles(deployment, observe_bundle(bundle))
