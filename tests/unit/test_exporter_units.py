"""Pure parts of the exporter: exposition format, INFO parsing, backup textfile pass-through."""

import dataclasses
import math
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redkeep.actions.audit import write_metrics as write_audit_metrics
from redkeep.audit.report import AuditReport, UnreachableReport
from redkeep.backup.metrics import read_metrics, write_metrics
from redkeep.config.defaults import StandaloneExporter
from redkeep.config.schema import ExporterSettings
from redkeep.exporter.exposition import Family, format_value, parse, render
from redkeep.exporter.info import number, parse_info, split_pairs
from redkeep.exporter.posture import audit_families, backup_families
from tests.servers import require_binary


def test_exposition_keeps_names_and_escapes_labels():
    family = Family("redis_total_error_replies", "counter", "no _total rename")
    family.add(3, {"err": 'quote" back\\slash\nnewline'})
    text = render([family, Family("empty", "gauge", "left out")])
    assert "# TYPE redis_total_error_replies counter" in text
    assert 'redis_total_error_replies{err="quote\\" back\\\\slash\\nnewline"} 3' in text
    assert "empty" not in text


def test_cached_label_text_follows_names_values_and_order():
    family = Family("m", "gauge", "h").add(1, {"a": "x"}).add(2, {"b": "x"})
    family.add(3, {"a": "y", "b": "x"}).add(4, {"b": "x", "a": "y"})
    other = Family("n", "gauge", "other help").add(5, {"a": "x"})
    for _ in range(2):  # the second render comes from the cache
        assert render([family, other]) == (
            "# HELP m h\n# TYPE m gauge\n"
            'm{a="x"} 1\nm{b="x"} 2\nm{a="y",b="x"} 3\nm{b="x",a="y"} 4\n'
            '# HELP n other help\n# TYPE n gauge\nn{a="x"} 5\n'
        )


def test_info_numbers_keep_integers_exact():
    assert number("18446744073709551615") == 18446744073709551615
    assert format_value(number("18446744073709551615")) == "18446744073709551615"
    assert (number("1.5"), number("ok"), number("down"), number("abc")) == (1.5, 1.0, 0.0, None)


def test_values_are_formatted_for_prometheus():
    assert [format_value(v) for v in (1.0, 0.25, float("inf"), float("nan"), 10**16 + 0.5)] == [
        "1",
        "0.25",
        "+Inf",
        "NaN",
        "1e+16",
    ]


def test_info_pairs_are_split_by_name():
    info = parse_info("# Commandstats\r\ncmdstat_get:calls=2,usec=5,usec_per_call=2.50\r\n")
    assert info["commandstats"]["cmdstat_get"]["usec_per_call"] == "2.50"
    assert split_pairs("ip=::1,port=6380,state=online") == {
        "ip": "::1",
        "port": "6380",
        "state": "online",
    }


def test_backup_textfile_metrics_pass_through(tmp_path):
    path = tmp_path / "backup.prom"
    write_metrics(path, "alpha", True, 1000.0, 2.5, 4096)
    write_metrics(path, "beta", False, 2000.0, 1.0, 0)
    families = {family.name: family for family in backup_families(path)}
    result = families["redkeep_backup_last_result"].samples
    assert sorted((labels["source"], value) for _, labels, value in result) == [
        ("alpha", 1.0),
        ("beta", 0.0),
    ]
    assert backup_families(tmp_path / "absent.prom") == []


def test_exporter_defaults_without_a_bundle_match_the_schema():
    schema = ExporterSettings().model_dump()
    standalone = dataclasses.asdict(StandaloneExporter())
    assert standalone == schema


NAMES = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True)
LABELS = st.dictionaries(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True), st.text())
VALUES = st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
FAMILIES = st.dictionaries(
    NAMES,
    st.tuples(
        st.sampled_from(["gauge", "counter", "untyped"]),
        st.text(),
        st.lists(st.tuples(LABELS, VALUES), max_size=4),
    ),
    max_size=4,
)


@given(FAMILIES)
def test_parse_reads_back_what_render_wrote(spec):
    families = []
    for name, (kind, help_text, samples) in spec.items():
        family = Family(name, kind, help_text)
        for labels, value in samples:
            family.add(value, labels)
        families.append(family)
    text = render(families, keep_empty=True)
    back = parse(text)
    assert [(f.name, f.kind, f.help) for f in back] == [(f.name, f.kind, f.help) for f in families]
    for ours, theirs in zip(back, families, strict=True):
        assert [(labels, read) for _, labels, read in ours.samples] == [
            (labels, float(format_value(given)) if isinstance(given, float) else given)
            for _, labels, given in theirs.samples
        ]
    assert render(back, keep_empty=True) == text


def test_promtool_reads_the_textfiles_and_a_page_with_escapes_and_a_histogram(tmp_path):
    """Prometheus' own parser (promtool) accepts what the one writer writes."""
    promtool = require_binary("promtool")
    write_metrics(tmp_path / "backup.prom", "a", False, 1000.5, 2.25, 0)  # families announced
    write_metrics(tmp_path / "backup.prom", "b", True, 2000.5, 1.5, 10)
    write_audit_metrics(tmp_path / "audit.prom", [])
    histogram = Family("redis_latency", "histogram", "latency")
    histogram.add(2, {"le": "0.5"}, "_bucket").add(3, {"le": "+Inf"}, "_bucket")
    histogram.add(0.75, suffix="_sum").add(3, suffix="_count")
    page = render(
        [
            Family("redis_up", "gauge", "up").add(1),
            Family("redis_commands_total", "counter", "c").add(7, {"cmd": 'a"b\\c\nd'}),
            histogram,
        ]
    )
    texts = [(tmp_path / "backup.prom").read_text(), (tmp_path / "audit.prom").read_text(), page]
    for text in [*texts, page.replace(" 7\n", " seven\n")]:
        result = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert (result.returncode == 0) == ("seven" not in text), result.stderr


@pytest.mark.parametrize(
    "line",
    ['m{a="x"} oops', "m{a=x} 1", 'm{a="x"b="y"} 1', "m 1 2 3", '{a="x"} 1', 'm{a="x} 1'],
)
def test_a_line_that_is_not_a_sample_is_an_error(line):
    with pytest.raises(ValueError):
        parse(f"# TYPE m gauge\n{line}\n")
    assert parse(f"other 1\n{line}\n", prefix="other") != []  # other names are not read


def test_backup_textfile_keeps_every_family_announced_and_other_sources_sorted(tmp_path):
    path = tmp_path / "backup.prom"
    write_metrics(path, "solo", False, 1000.5, 2.25, 4096)  # a first run that failed
    assert path.read_text() == (
        "# HELP redkeep_backup_last_success_timestamp_seconds Unix time of the last successful "
        "backup.\n# TYPE redkeep_backup_last_success_timestamp_seconds gauge\n"
        "# HELP redkeep_backup_last_run_timestamp_seconds Unix time the last backup run finished."
        "\n# TYPE redkeep_backup_last_run_timestamp_seconds gauge\n"
        'redkeep_backup_last_run_timestamp_seconds{source="solo"} 1000.5\n'
        "# HELP redkeep_backup_last_duration_seconds Duration of the last backup run.\n"
        "# TYPE redkeep_backup_last_duration_seconds gauge\n"
        'redkeep_backup_last_duration_seconds{source="solo"} 2.25\n'
        "# HELP redkeep_backup_last_size_bytes Bytes stored by the last successful backup.\n"
        "# TYPE redkeep_backup_last_size_bytes gauge\n"
        "# HELP redkeep_backup_last_result 1 if the last backup run succeeded, 0 if it failed.\n"
        "# TYPE redkeep_backup_last_result gauge\n"
        'redkeep_backup_last_result{source="solo"} 0\n'
    )
    write_metrics(path, "b-2", True, 2000.5, 1.5, 10)
    write_metrics(path, "a", True, 3000.5, 1.5, 20)
    write_metrics(path, "solo", False, 4000.5, 1.5, 0)
    text = path.read_text()
    assert text.index('{source="a"} 3000.5') < text.index('{source="b-2"} 2000.5')
    assert read_metrics(path, "b-2") == {
        "last_success_timestamp_seconds": 2000.5,
        "last_run_timestamp_seconds": 2000.5,
        "last_duration_seconds": 1.5,
        "last_size_bytes": 10,
        "last_result": 0 + 1,
    }
    assert "last_success_timestamp_seconds" not in read_metrics(path, "solo")
    assert read_metrics(tmp_path / "absent.prom", "a") == {}


def test_audit_textfile_and_its_pass_through(tmp_path):
    path = tmp_path / "redkeep_audit.prom"
    counts = {"critical": 1, "high": 0, "medium": 2, "low": 0, "info": 3}
    reports = [
        AuditReport(target="rediss://admin:****@h:6380", counts=counts, score=77),
        UnreachableReport(target="redis://down:6379", error="refused"),
    ]
    write_audit_metrics(path, reports)
    lines = path.read_text().splitlines()
    assert lines[:3] == [
        "# HELP redkeep_audit_findings Audit findings not accepted, by severity.",
        "# TYPE redkeep_audit_findings gauge",
        'redkeep_audit_findings{target="rediss://admin:****@h:6380",severity="critical"} 1',
    ]
    assert lines[-1] == 'redkeep_audit_score{target="rediss://admin:****@h:6380"} 77'
    assert len(lines) == 4 + 5 + 1
    passed = {family.name: family for family in audit_families(path)}
    assert passed["redkeep_audit_score"].samples == [
        ("", {"target": "rediss://admin:****@h:6380"}, 77)
    ]
    assert passed["redkeep_audit_score"].help == "From the last redkeep audit"
    assert math.isclose(sum(v for _, _, v in passed["redkeep_audit_findings"].samples), 6)
