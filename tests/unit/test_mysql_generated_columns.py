"""Which columns `information_schema.COLUMNS` calls computed on MySQL/MariaDB: MySQL 8 writes `DEFAULT_GENERATED`
in EXTRA for a column with an expression default (`DEFAULT CURRENT_TIMESTAMP`); its values are stored, and undo
must restore them."""

from __future__ import annotations

import pytest

from monitor.fix.catalog.mysql import is_generated


@pytest.mark.parametrize("extra", ["VIRTUAL GENERATED", "STORED GENERATED", "stored generated"])
def test_a_generated_column_is_computed(extra: str) -> None:
    assert is_generated(extra)


@pytest.mark.parametrize("extra", ["DEFAULT_GENERATED", "DEFAULT_GENERATED on update CURRENT_TIMESTAMP",
                                   "on update current_timestamp()", "auto_increment", "", None])
def test_a_stored_column_is_not_computed(extra: str | None) -> None:
    assert not is_generated(extra, "NEVER")


def test_mariadb_says_always() -> None:
    assert is_generated("", "ALWAYS")
