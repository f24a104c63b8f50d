import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redkeep.envfile import generate_password, parse_env, read_env, render_env, update_env
from redkeep.errors import ConfigError
from redkeep.fsutil import mode_of


def test_generated_passwords_are_256_bit_hex_and_distinct():
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(re.fullmatch(r"[0-9a-f]{64}", password) for password in passwords)


def test_parse_env_reads_keys_skips_comments_and_strips_quotes():
    text = "# header\n\nA=1\nexport B='two words'\nC=\"x=y\"\nD=\n"
    assert parse_env(text) == {"A": "1", "B": "two words", "C": "x=y", "D": ""}


def test_parse_env_names_the_bad_line():
    with pytest.raises(ConfigError, match=r"\.env:2: not a KEY=value line"):
        parse_env("A=1\nthis is not a pair\n")


def test_update_env_keeps_other_lines_and_writes_0600(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# keep me\nA=1\nOTHER=keep\n")
    path.chmod(0o644)
    update_env(path, {"A": "2", "NEW": "3"})
    assert path.read_text() == "# keep me\nA=2\nOTHER=keep\nNEW=3\n"
    assert mode_of(path) == 0o600


def test_update_env_leaves_no_temp_files(tmp_path):
    path = tmp_path / ".env"
    update_env(path, {"A": "1"})
    assert [p.name for p in tmp_path.iterdir()] == [".env"]


def test_read_env_of_missing_file_is_empty(tmp_path):
    assert read_env(tmp_path / "absent") == {}


@given(
    st.dictionaries(
        st.from_regex(r"[A-Z][A-Z0-9_]{0,20}", fullmatch=True),
        st.text(alphabet=st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=40)
        .map(str.strip)
        .filter(lambda v: not (len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"")),
    )
)
def test_render_then_parse_round_trips(values):
    assert parse_env(render_env("# header", values)) == values


def test_update_env_sets_every_line_of_a_repeated_key(tmp_path):
    # Readers take the last line of a key: an update of the first alone would change nothing.
    path = tmp_path / ".env"
    path.write_text("REDIS_APP_PASSWORD=first\nOTHER=x\nREDIS_APP_PASSWORD=second\n")
    update_env(path, {"REDIS_APP_PASSWORD": "new"})
    assert read_env(path) == {"REDIS_APP_PASSWORD": "new", "OTHER": "x"}
    assert path.read_text().count("REDIS_APP_PASSWORD") == 1


def test_a_env_that_is_not_utf8_is_named_as_a_config_error(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(b"REDIS_APP_PASSWORD=\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"\.env: not UTF-8 text \(byte 19\)"):
        read_env(path)
    with pytest.raises(ConfigError, match="not UTF-8"):
        update_env(path, {"REDIS_APP_PASSWORD": "new"})
    assert path.read_bytes() == b"REDIS_APP_PASSWORD=\xff\xfe\n"
