"""Pure parts of the exporter: exposition format, INFO parsing, backup textfile pass-through."""

import dataclasses

from redkeep.backup.metrics import write_metrics
from redkeep.config.defaults import StandaloneExporter
from redkeep.config.schema import ExporterSettings
from redkeep.exporter.exposition import Family, format_value, render
from redkeep.exporter.info import number, parse_info, split_pairs
from redkeep.exporter.posture import backup_families


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
