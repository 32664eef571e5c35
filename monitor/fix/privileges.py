"""What the fix role may not do, as the server decides it: each kind of write a fix makes (delete the duplicates,
repoint or archive the referencing rows) is EXPLAINed on the fix role's connection, with `WHERE false`, inside a
savepoint rolled back at once. PostgreSQL and MariaDB/MySQL check a statement's privileges when they plan it, also
in a read-only transaction and for EXPLAIN (PostgreSQL skips the read-only check for EXPLAIN; MariaDB checks the
privileges before it), and no row is read or written. A refusal the database gives for a missing privilege
(`Dialect.privilege_refusal`: SQLSTATE 42501, MariaDB/MySQL 1142, 1143, 1044) is one line naming the privilege,
the object, the database's own words and the GRANT that lets the fix go on.

The dry run's plan blocks on these (`plan._judge_unseen`); a batch stopped by a privilege error says the same
(`execute._after_stop`): running the fix again would meet the same refusal, so it is no advice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.db import first_line
from monitor.dialects import for_backend
from monitor.fix.refs import Reference


@dataclass(frozen=True)
class Write:
    """One kind of write a fix makes: the privilege it takes, on which table, as an EXPLAINable statement."""

    privilege: str
    table: sa.Table
    statement: sa.Delete | sa.Update
    why: str
    columns: tuple[str, ...] = ()  # a column privilege's columns (UPDATE of a reference's columns)


def fix_writes(table: sa.Table, refs: Sequence[Reference], child: Callable[[Reference], sa.Table]) -> list[Write]:
    """The fixed table's DELETE, each repointed reference's UPDATE of its columns, each archived one's DELETE."""
    writes = [Write("DELETE", table, sa.delete(table).where(sa.false()), "to delete the duplicates")]
    for ref in refs:
        if not ref.visible or ref.action == "refuse":
            continue
        referencing = child(ref)
        if ref.action == "repoint":
            columns = {name: referencing.c[name] for name in ref.columns}
            writes.append(Write("UPDATE", referencing, sa.update(referencing).values(columns).where(sa.false()),
                                "to repoint its rows to the kept rows", tuple(ref.columns)))
        else:
            writes.append(Write("DELETE", referencing, sa.delete(referencing).where(sa.false()),
                                "to archive its rows (on_reference = \"archive\")"))
    return writes


def refused_writes(conn: Connection, writes: Sequence[Write]) -> list[str]:
    """One line per write the server refuses this role for a missing privilege; [] where it allows them all, or
    where the database has no privileges to refuse (SQLite)."""
    rules = for_backend(conn.dialect.name)
    if not rules.roles:
        return []
    preparer = conn.dialect.identifier_preparer
    refusals = []
    grantee: str | None = None
    for write in writes:
        refused = _explained(conn, write.statement)
        code = rules.privilege_refusal(refused) if refused is not None else None
        if refused is None or code is None:
            continue
        grantee = grantee or rules.grantee(conn)
        name = preparer.format_table(write.table)
        columns = f" ({', '.join(preparer.quote(c) for c in write.columns)})" if write.columns else ""
        refusals.append(f"the fix role may not {write.privilege} {name}, which the fix needs {write.why} (the "
                        f"database: {first_line(refused)}, {code}): GRANT {write.privilege}{columns} ON {name} TO "
                        f"{grantee}, or point fix_url / fix_url_env at a role that has it")
    return refusals


def _explained(conn: Connection, statement: Any) -> BaseException | None:
    """The error EXPLAIN of `statement` raised, or None; in a savepoint, so a failed EXPLAIN leaves the
    transaction usable (PostgreSQL aborts it otherwise)."""
    text = str(statement.compile(conn))
    savepoint = conn.begin_nested()
    try:
        conn.exec_driver_sql(f"EXPLAIN {text}")
    except sa.exc.DBAPIError as exc:
        return exc.orig or exc
    finally:
        savepoint.rollback()
    return None
