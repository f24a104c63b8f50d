"""The checks read only facts `Facts` has and settings `gather` asks for: a typo would turn a
check into "could not verify" without anyone noticing."""

import ast
import inspect

import pytest

from redkeep.audit import checks, hachecks, report
from redkeep.audit.facts import CONFIG_PARAMETERS, Facts, Unavailable, need
from redkeep.redis.target import parse_url


def calls_and_reads() -> tuple[set[str], set[str]]:
    """Names passed to `facts.setting(...)`, and attributes read from `facts`, in the checks
    and the report. A name passed on by a helper (`_enabled_setting(facts, "debug", ...)`) or
    looped over (`for name in ("a", "b")`) counts as read too."""
    settings, attributes = set(), set()
    for module in (checks, hachecks, report):
        tree = ast.parse(inspect.getsource(module))
        forwarded: dict[str, int] = {}  # helper -> position of the name it passes on
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            parameters = [argument.arg for argument in function.args.args]
            for node in ast.walk(function):
                if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "facts":
                    attributes.add(node.attr)
                if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "setting"):
                    continue
                argument = node.args[0]
                if isinstance(argument, ast.Constant):
                    settings.add(argument.value)
                elif argument.id in parameters:
                    forwarded[function.name] = parameters.index(argument.id)
                else:  # a loop variable: the names looped over
                    loop = next(
                        loop
                        for loop in ast.walk(function)
                        if isinstance(loop, ast.For | ast.comprehension)
                        and getattr(loop.target, "id", None) == argument.id
                    )
                    settings |= {item.value for item in loop.iter.elts}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in forwarded:
                settings.add(node.args[forwarded[node.func.id]].value)
    return settings, attributes


def test_every_setting_a_check_reads_is_one_gather_asks_for():
    settings, _ = calls_and_reads()
    assert len(settings) > 30  # the walk found the checks' reads
    assert settings - set(CONFIG_PARAMETERS) == set()


def test_every_fact_a_check_reads_exists():
    _, attributes = calls_and_reads()
    assert {"info", "users", "dryrun", "certificate", "setting", "peers", "bus"} <= attributes
    assert {name for name in attributes if not hasattr(Facts, name)} == set()


def test_an_unknown_setting_is_an_error_and_an_unread_fact_says_so():
    facts = Facts(parse_url("redis://h:6379"), config={})
    with pytest.raises(KeyError, match="tls-prot"):
        facts.setting("tls-prot")
    with pytest.raises(Unavailable, match="CONFIG GET tls-port was not read"):
        facts.setting("tls-port")
    with pytest.raises(Unavailable, match="clients was not read"):
        need(facts.clients)
