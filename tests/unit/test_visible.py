from redkeep.app import visible


def test_plain_text_and_newlines_pass_unchanged():
    assert visible("admin ✓ ünïcode") == "admin ✓ ünïcode"
    assert visible("two\nlines") == "two\nlines"


def test_what_a_terminal_acts_on_is_escaped():
    assert visible("\x1b[2J\x07\x00\t") == "\\x1b[2J\\x07\\x00\\t"
    assert visible("a\u202eb\u2028c") == "a\\u202eb\\u2028c"
    assert visible("a\nb", keep="") == "a\\nb"
