"""Counts with their nouns and database values in one form (monitor/words.py), as every face writes them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from monitor.tui.screens.groups import loaded_text
from monitor.tui.widgets.paged_table import cell
from monitor.words import counted, plural, value_text


def test_counts_agree_with_their_nouns():
    assert [counted(n, "row") for n in (0, 1, 2, 1234)] == ["0 rows", "1 row", "2 rows", "1,234 rows"]
    assert counted(1, "duplicate group") == "1 duplicate group" and counted(3, "archived row") == "3 archived rows"
    assert plural(2, "batch") == "batches" and plural(2, "index") == "indexes" and plural(1, "check") == "check"
    assert loaded_text(1, 1, more=False).plain == "1 of 1 group loaded"
    assert loaded_text(2, None, more=True).plain == "2 groups loaded"


def test_a_timestamp_has_one_form_whether_or_not_it_has_microseconds():
    whole, raced = datetime(2024, 6, 1, 1, 10, 31), datetime(2024, 6, 1, 1, 10, 31, 4000)
    assert value_text(whole) == "2024-06-01 01:10:31.000000"  # as SQLite's DATETIME stores it
    assert value_text(raced) == "2024-06-01 01:10:31.004000"
    assert value_text(whole.replace(tzinfo=UTC)) == "2024-06-01 01:10:31.000000+00:00"
    assert value_text(whole.replace(tzinfo=timezone(timedelta(hours=2)))) == "2024-06-01 01:10:31.000000+02:00"
    assert value_text(time(1, 10, 31)) == "01:10:31.000000" and value_text(date(2024, 6, 1)) == "2024-06-01"


def test_other_values_as_people_read_them_and_cells_write_them_the_same():
    assert [value_text(v) for v in (None, True, 3, Decimal("1.50"), b"\x01\xff", "x")] == \
        ["NULL", "true", "3", "1.50", "0x01ff", "x"]
    for value in (datetime(2024, 6, 1, 1, 10, 31), True, Decimal("1.50"), "x", 7):
        assert cell(value).plain == value_text(value)


def test_a_value_holding_what_a_terminal_acts_on_is_written_with_escapes():
    """A row's value (the application's users wrote it) must not move the cursor, recolour or overwrite the line
    that says which row a fix keeps: control and format characters are written as their escapes."""
    spoof = "evil\r      keep    id=9\x1b[2K\x1b]52;c;aGk=\x07\nsecond line\u202edesrever\tend"
    shown = value_text(spoof)
    assert shown == ("evil\\r      keep    id=9\\x1b[2K\\x1b]52;c;aGk=\\x07\\nsecond line\\u202edesrever"
                     "\\tend")
    assert shown.isprintable() and shown.startswith(cell(spoof).plain.removesuffix("…"))  # the dashboard's cell
    assert value_text("naïve café 東京 x y") == "naïve café 東京 x y"  # printable text is unchanged


@pytest.mark.parametrize("text", [
    "\U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f3f3\ufe0f\u200d\U0001f308",  # emoji joined by U+200D
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian: a word with a zero-width non-joiner
    "\u6771\u4eac\u3000\u5927\u962a",  # Japanese: an ideographic space
    "10\u00a0\u20ac, 10:00\u202fAM",  # a no-break space, a narrow one
])
def test_text_that_needs_joiners_or_wide_spaces_is_written_as_it_is(text):
    """Joiners and spaces of other widths move no cursor and redraw nothing; written as escapes they broke emoji,
    Persian words and Japanese text apart."""
    assert value_text(text) == text
