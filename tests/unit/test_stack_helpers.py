"""Which helpers `up` runs beside a sentinel or cluster deployment's nodes, and which it stops."""

from types import SimpleNamespace

import pytest

from redkeep.actions.stack import deployment_helpers
from redkeep.actions.stack_nodes import HELPERS, unwanted
from redkeep.config.schema import Settings
from redkeep.stack.processes import BACKUP, EXPORTER, PROXY


def bundle(topology: str, **sections) -> SimpleNamespace:
    """What the helpers' choice reads of a bundle: its settings."""
    return SimpleNamespace(
        settings=Settings.model_validate({"deployment": {"topology": topology}, **sections})
    )


@pytest.mark.parametrize(
    ("topology", "sections", "expected"),
    [
        ("sentinel", {}, [EXPORTER, PROXY]),
        ("sentinel", {"backup": {"interval_minutes": 30}}, [EXPORTER, PROXY, BACKUP]),
        ("sentinel", {"proxy": {"enabled": False}}, [EXPORTER]),
        ("cluster", {}, [EXPORTER]),  # no proxy: it is no cluster router
        ("cluster", {"backup": {"interval_minutes": 30}}, [EXPORTER, BACKUP]),
    ],
)
def test_one_exporter_always_the_schedule_when_set(topology, sections, expected):
    assert deployment_helpers(bundle(topology, **sections)) == expected


def test_down_stops_every_helper_and_up_stops_the_unwanted_ones():
    assert set(HELPERS) == {EXPORTER, PROXY, BACKUP}  # down looks for each, whatever is set
    assert set(unwanted(bundle("cluster"))) == {PROXY, BACKUP}
    assert set(unwanted(bundle("sentinel", backup={"interval_minutes": 5}))) == set()
