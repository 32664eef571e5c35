"""The rows a refused SQLite batch or undo would leave referring to no row: those listed after its writes less
those listed before them (`KeyViolation.since`), also for a WITHOUT ROWID table, whose rows SQLite lists with no
rowid (counted then, not matched)."""

from monitor.dialects import KeyViolation


def violation(*rowids: object, table: str = "tag") -> KeyViolation:
    return KeyViolation(table=table, columns=("grp_id",), name="tag_grp", parent="grp", rowids=rowids)


def test_rows_listed_before_are_not_named_again() -> None:
    new = violation(2, 5).since([violation(5)])
    assert new is not None and new.rowids == (2,)
    assert new.describe() == "1 row(s) of tag(grp_id) (rowid 2) would refer, by foreign key tag_grp, to no row of grp"


def test_another_tables_rows_do_not_hide_these() -> None:
    new = violation(2).since([violation(2, table="other")])
    assert new is not None and new.rowids == (2,)


def test_nothing_new_is_none() -> None:
    assert violation(2, 5).since([violation(5, 2)]) is None


def test_a_without_rowid_table_is_counted() -> None:
    new = violation(None, None, None).since([violation(None)])
    assert new is not None and new.rows == 2
    assert new.describe() == "2 row(s) of tag(grp_id) would refer, by foreign key tag_grp, to no row of grp"
    assert violation(None).since([violation(None)]) is None
