"""The words of a check's `where` that may name a table the binary log stream follows (`monitor/live/mysql.py`)."""

from monitor.live.mysql import _names_in


def test_a_quote_inside_a_string_hides_no_name_of_the_where() -> None:
    """A quote inside a string literal (`'a"b'`, `'a`b'`) paired with the next one took every name between the two
    for one quoted name: the table the `where` reads was not followed (a row it let back in made a duplicate the
    stream never counted)."""
    words = _names_in("note <> 'a\"b' AND id NOT IN (SELECT x FROM ignored) AND note <> 'c\"d'"
                      " AND note <> 'e`f' AND id NOT IN (SELECT x FROM `odd name`) AND note <> 'g`h'")
    assert {"ignored", "odd name"} <= set(words)


def test_names_are_read_as_the_server_reads_them() -> None:
    words = set(_names_in("id NOT IN (SELECT x FROM `other`.`a``b`) AND id NOT IN (SELECT x FROM ignoré)"
                          " AND /* cmt */ \"ansi\"\"q\" IS NULL AND note <> 'x\U0001F600'"))
    assert {"other", "a`b", "ignoré", 'ansi"q', "cmt"} <= words
    assert not any(ord(ch) > 0xFFFF for w in words for ch in w)  # no table is named so: utf8mb3 would refuse it
