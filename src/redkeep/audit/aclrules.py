"""What an ACL user may run, from its rules, for servers without ACL DRYRUN (Redis 6.2).

Rules are applied left to right as Redis applies them (`+@all`, `-@cat`, `+cmd`, `-cmd|sub`,
`allcommands`, `nocommands`). Only the commands the audit asks about are known, with their
categories from Redis' command table; that is all the fallback needs.
"""

# The audit's probes -> (command, subcommand, categories).
PROBES = {
    "config set": ("config", "set", {"admin", "slow", "dangerous"}),
    "flushall": ("flushall", None, {"keyspace", "write", "slow", "dangerous"}),
    "module": ("module", "list", {"admin", "slow", "dangerous"}),
    "debug": ("debug", None, {"admin", "slow", "dangerous"}),
    "acl setuser": ("acl", "setuser", {"admin", "slow", "dangerous"}),
    "eval": ("eval", None, {"slow", "scripting"}),
    "fcall": ("fcall", None, {"slow", "scripting"}),
    "restore": ("restore", None, {"keyspace", "write", "slow", "dangerous"}),
    # A Sentinel's (its SENTINEL subcommands are all @admin @dangerous).
    "sentinel set": ("sentinel", "set", {"admin", "slow", "dangerous"}),
    "sentinel failover": ("sentinel", "failover", {"admin", "slow", "dangerous"}),
    "sentinel remove": ("sentinel", "remove", {"admin", "slow", "dangerous"}),
    "sentinel config set": ("sentinel", "config", {"admin", "slow", "dangerous"}),
}


def allows(rules: str, flags: set[str], probe: str) -> bool:
    """Whether a user with these command rules may run `probe` (a key of PROBES)."""
    command, sub, categories = PROBES[probe]
    allowed = "allcommands" in flags
    for rule in rules.lower().split():
        if rule in ("allcommands", "+@all"):
            allowed = True
        elif rule in ("nocommands", "-@all"):
            allowed = False
        elif rule[:2] in ("+@", "-@"):
            if rule[2:] in categories:
                allowed = rule[0] == "+"
        elif rule[:1] in "+-":
            name, _, rule_sub = rule[1:].partition("|")
            if name == command and (not rule_sub or rule_sub == sub):
                allowed = rule[0] == "+"
    return allowed
