"""PostgreSQL's catalog: `pg_constraint`, `pg_trigger`, `pg_rewrite`, `pg_inherits`, `pg_index`, privileges and
row-level security, every table named by `regclass` text quoted by SQLAlchemy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.fix.catalog.base import Catalog, DeleteHooks, ForeignKey, UniqueKey, qualified

# PostgreSQL `pg_constraint.confdeltype` (see the pg_constraint catalog documentation).
_PG_ON_DELETE = {"a": None, "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_PG_ON_UPDATE = {**_PG_ON_DELETE, "a": "NO ACTION"}  # (confupdtype)


# Whether a trigger (pg_trigger.tgenabled) or rule (pg_rewrite.ev_enabled) fires in this session: 'O' when
# session_replication_role is origin or local, 'R' only when it is replica, 'A' always, 'D' never (docs, ALTER TABLE
# ENABLE REPLICA / ALWAYS TRIGGER and RULE). The setting is asked in the same query.
_FIRES = """CASE {enabled} WHEN 'A' THEN true
                WHEN 'O' THEN current_setting('session_replication_role') <> 'replica'
                WHEN 'R' THEN current_setting('session_replication_role') = 'replica'
                ELSE false END"""


class PostgresCatalog(Catalog):
    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._event_triggers: dict[tuple[str | None, str, str], list[Any]] = {}

    def foreign_keys_to(self, table: sa.Table) -> list[ForeignKey]:
        # conparentid = 0: a foreign key of a partitioned table is also cloned onto each partition, and one that
        # refers to a partitioned table is cloned to refer to each of its partitions. A foreign key declared to
        # refer to one partition of the table (conparentid = 0, confrelid that partition) is a reference too
        # (pg_partition_tree lists nothing for a table that is not partitioned, hence the table's own oid first).
        # Of a partition, a foreign key declared to refer to a partitioned table it belongs to (at any level,
        # `pg_partition_ancestors`) is a reference too: the rows of the partition are rows of that table, the
        # referencing rows point at them through it (its clone referring to the partition, conparentid <> 0,
        # is what the database checks on a delete; break16 F14). The ancestor's unique key holds its partition
        # key, so the referred values name one row of the whole tree, and the partition's own copy of it
        # (same column names) tells its rows apart the same way.
        rows = self.conn.execute(sa.text("""
            WITH ancestors AS (SELECT relid FROM pg_catalog.pg_partition_ancestors(to_regclass(:t))
                               WHERE relid <> to_regclass(:t))
            SELECT con.conname, n.nspname, c.relname, con.confdeltype, con.confupdtype,
                   CASE WHEN con.confrelid <> to_regclass(:t) AND con.confrelid NOT IN (SELECT relid FROM ancestors)
                        THEN con.confrelid::regclass::text END AS partition,
                   CASE WHEN con.confrelid IN (SELECT relid FROM ancestors)
                        THEN con.confrelid::regclass::text END AS ancestor,
                   -- another table holding rows of the table (an ancestor) or whose rows it holds (a partition)
                   con.conrelid <> to_regclass(:t) AND (con.conrelid IN (SELECT relid FROM ancestors)
                       OR con.conrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree(to_regclass(:t))))
                       AS within,
                   ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
                         JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                         ORDER BY k.ord) AS columns,
                   ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
                         JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
                         ORDER BY k.ord) AS referred,
                   has_table_privilege(con.conrelid, 'SELECT') AND has_table_privilege(con.conrelid, 'UPDATE')
                       AS visible,
                   -- row-level security applies to the role: not a superuser or BYPASSRLS, and not the
                   -- table's owner, or the owner under FORCE ROW LEVEL SECURITY (docs, "Row Security Policies")
                   CASE WHEN c.relrowsecurity AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
                         AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r
                                  WHERE r.rolname = current_user)
                        THEN current_user END AS hidden_from
            FROM pg_catalog.pg_constraint con
            JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE con.contype = 'f' AND con.conparentid = 0
              AND (con.confrelid = to_regclass(:t)
                   OR con.confrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree(to_regclass(:t)))
                   OR con.confrelid IN (SELECT relid FROM ancestors))
            ORDER BY n.nspname, c.relname, con.conname"""), {"t": qualified(self.conn, table)}).all()
        return [ForeignKey(self._schema_or_none(r.nspname), r.relname, r.conname, tuple(r.columns),
                           tuple(r.referred), _PG_ON_DELETE.get(r.confdeltype), bool(r.visible), r.hidden_from,
                           r.partition, _PG_ON_UPDATE.get(r.confupdtype), r.ancestor, bool(r.within))
                for r in rows]

    def delete_hooks(self, table: sa.Table) -> DeleteHooks:
        params = {"t": qualified(self.conn, table)}
        # pg_trigger.tgtype bits: 1 ROW, 2 BEFORE, 8 DELETE, 64 INSTEAD (see the pg_trigger documentation). A
        # DELETE on a partitioned table fires the row triggers of the partitions holding the rows: those declared on
        # a partition itself count too (a clone of the table's own has tgparentid set; read through to_jsonb, the
        # column exists from PostgreSQL 13 on).
        triggers = self.conn.execute(sa.text(f"""
            SELECT t.tgname || CASE WHEN t.tgrelid <> to_regclass(:t)
                                    THEN ' on partition ' || t.tgrelid::regclass::text ELSE '' END AS tgname,
                   (t.tgtype & 2) <> 0 OR (t.tgtype & 64) <> 0 AS blocks FROM pg_catalog.pg_trigger t
            WHERE (t.tgrelid = to_regclass(:t)
                   OR t.tgrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree(to_regclass(:t)))
                      AND coalesce((to_jsonb(t) ->> 'tgparentid')::oid, 0) = 0)
              AND NOT t.tgisinternal AND (t.tgtype & 8) <> 0 AND {_FIRES.format(enabled="t.tgenabled")}
            ORDER BY 1"""), params).all()
        rules = self.conn.execute(sa.text(
            "SELECT rulename FROM pg_catalog.pg_rewrite WHERE ev_class = to_regclass(:t) AND ev_type = '4' "
            f"AND {_FIRES.format(enabled='ev_enabled')} ORDER BY rulename"), params).scalars().all()
        children = self.conn.execute(sa.text("""
            SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
            JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
            WHERE i.inhparent = to_regclass(:t) AND p.relkind = 'r' ORDER BY c.relname"""), params).scalars().all()
        blocking = [f"BEFORE DELETE trigger {r.tgname}" for r in triggers if r.blocks]
        blocking += [f"rule {name} ON DELETE" for name in rules]
        firing = [f"AFTER DELETE trigger {r.tgname}" for r in triggers if not r.blocks]
        return DeleteHooks(tuple(blocking), tuple(firing), tuple(children))

    def inheritance_children(self, schema: str | None, name: str) -> tuple[str, ...]:
        return tuple(self.conn.execute(sa.text("""
            SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
            JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
            WHERE i.inhparent = to_regclass(:t) AND p.relkind = 'r' ORDER BY c.relname"""),
            {"t": qualified(self.conn, sa.Table(name, sa.MetaData(), schema=schema))}).scalars())

    def partition_columns(self, schema: str | None, name: str) -> tuple[str, ...]:
        return tuple(self.conn.execute(sa.text("""
            SELECT a.attname FROM pg_catalog.pg_partitioned_table p JOIN pg_catalog.pg_attribute a
              ON a.attrelid = p.partrelid AND a.attnum = ANY (CAST(p.partattrs AS int2[]))
            WHERE p.partrelid = to_regclass(:t) ORDER BY a.attnum"""),
            {"t": qualified(self.conn, sa.Table(name, sa.MetaData(), schema=schema))}).scalars())

    def write_triggers(self, schema: str | None, name: str, event: str, columns: tuple[str, ...]) -> tuple[str, ...]:
        rows = self._write_triggers(schema, name, event)
        return tuple(f"rule {r.name} ON {event}" if r.rule else f"{r.timing} {event} trigger {r.name}" for r in rows
                     if not r.columns or set(r.columns) & set(columns))

    def _write_triggers(self, schema: str | None, name: str, event: str) -> list[Any]:
        """The table's triggers and rules for `event`, each with the columns of an UPDATE OF trigger (else none),
        read once per catalog: the references of one table ask for their own columns (`refs.find_references`)."""
        # pg_trigger.tgtype bits: 2 BEFORE, 4 INSERT, 8 DELETE, 16 UPDATE, 64 INSTEAD; tgattr: an UPDATE OF
        # trigger's columns (it fires only when the UPDATE sets one of them). Statement triggers fire once per
        # statement, alike. pg_rewrite.ev_type: '2' UPDATE, '3' INSERT, '4' DELETE; a rule rewrites the write
        # itself (DO INSTEAD, DO ALSO). Both only as far as they fire for this session (`_FIRES`).
        if (schema, name, event) not in self._event_triggers:
            self._event_triggers[schema, name, event] = list(self.conn.execute(sa.text(f"""
                SELECT t.tgname AS name, CASE WHEN (t.tgtype & 64) <> 0 THEN 'INSTEAD OF'
                                              WHEN (t.tgtype & 2) <> 0 THEN 'BEFORE' ELSE 'AFTER' END AS timing,
                       false AS rule,
                       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.tgrelid
                             AND a.attnum = ANY (CAST(t.tgattr AS int2[]))) AS columns
                FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid = to_regclass(:t) AND NOT t.tgisinternal AND {_FIRES.format(enabled="t.tgenabled")}
                  AND (t.tgtype & CAST(:bit AS int)) <> 0
                UNION ALL
                SELECT r.rulename, NULL, true, CAST(ARRAY[] AS text[]) FROM pg_catalog.pg_rewrite r
                WHERE r.ev_class = to_regclass(:t) AND r.ev_type = :e AND {_FIRES.format(enabled="r.ev_enabled")}
                ORDER BY rule, name"""),
                {"t": qualified(self.conn, sa.Table(name, sa.MetaData(), schema=schema)),
                 "bit": {"INSERT": 4, "UPDATE": 16}.get(event, 8),
                 "e": {"INSERT": "3", "UPDATE": "2"}.get(event, "4")}).all())
        return self._event_triggers[schema, name, event]

    def raising_triggers(self, context: str, written: Sequence[sa.Table] = ()) -> tuple[str, ...]:
        # A PL/pgSQL frame names the function as regprocedure prints it (`PL/pgSQL function log_change() line 3 at
        # RAISE`, schema-qualified when not on the search path); PL/Python, PL/Perl and PL/Tcl quote its name
        # (`PL/Python function "f"`). A trigger cloned onto a partition (tgparentid set) is named by its parent's.
        # A function shared by triggers of several tables (a "touch" function): those of the tables written first.
        rows = self.conn.execute(sa.text(f"""
            SELECT name, relation, written FROM (
                SELECT t.tgname AS name, t.tgrelid::regclass::text AS relation,
                       t.tgrelid IN (SELECT to_regclass(w) FROM unnest(CAST(:written AS text[])) AS w) AS written,
                       least(nullif(strpos(:context, 'function ' || CAST(CAST(p.oid AS regprocedure) AS text)), 0),
                             nullif(strpos(:context, 'function "' || p.proname || '"'), 0)) AS position
                FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                WHERE NOT t.tgisinternal AND coalesce((to_jsonb(t) ->> 'tgparentid')::oid, 0) = 0
                  AND {_FIRES.format(enabled="t.tgenabled")}) named
            WHERE position IS NOT NULL ORDER BY position, relation, name"""),
            {"context": context, "written": [qualified(self.conn, table) for table in written]}).all()
        if any(r.written for r in rows):
            rows = [r for r in rows if r.written]
        return tuple(f"trigger {r.name} on {r.relation}" for r in rows)

    def descendant_tables(self, schema: str | None) -> set[str]:
        # pg_inherits lists partitions and inheritance children alike; a query of the parent reads their rows.
        return set(self.conn.execute(sa.text("""
            SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
            WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace
                                    WHERE nspname = coalesce(:s, current_schema()))"""), {"s": schema}).scalars())

    def exclusion_constraints(self, schema: str | None, name: str) -> list[tuple[str, tuple[str, ...]]]:
        """A plain column element is in `conkey`; one inside an expression or the WHERE (`conkey` holds 0 for an
        expression) is a dependency of the constraint's index on the column (pg_depend)."""
        rows = self.conn.execute(sa.text("""
            SELECT c.conname, array_agg(DISTINCT a.attname ORDER BY a.attname) AS columns
            FROM pg_catalog.pg_constraint c
            JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum > 0 AND (
                a.attnum = ANY (c.conkey) OR EXISTS (
                    SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.conindid
                      AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = c.conrelid
                      AND d.refobjsubid = a.attnum))
            WHERE c.conrelid = to_regclass(:t) AND c.contype = 'x'
            GROUP BY c.conname ORDER BY c.conname"""),
            {"t": qualified(self.conn, sa.Table(name, sa.MetaData(), schema=schema))})
        return [(str(row.conname), tuple(row.columns)) for row in rows]

    def table_identity(self, table: sa.Table) -> str:
        oid = self.conn.execute(sa.text("SELECT CAST(to_regclass(:t) AS oid)"),
                                {"t": qualified(self.conn, table)}).scalar()
        return f"postgresql oid {oid}"

    def restrict_access(self, table: sa.Table) -> None:
        name = qualified(self.conn, table)
        grantees = self.conn.execute(sa.text("""
            SELECT DISTINCT COALESCE(r.rolname, 'PUBLIC') AS role, a.grantee = 0 AS public
            FROM pg_catalog.pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
            LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
            WHERE c.oid = to_regclass(:t) AND a.grantee <> c.relowner"""), {"t": name}).all()
        quote = self.conn.dialect.identifier_preparer.quote
        self.conn.exec_driver_sql(f"REVOKE ALL ON TABLE {name} FROM PUBLIC")
        for grantee in grantees:
            if not grantee.public:
                self.conn.exec_driver_sql(f"REVOKE ALL ON TABLE {name} FROM {quote(grantee.role)}")
        self.conn.exec_driver_sql(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
        # A publication FOR ALL TABLES (or of the schema) that publishes deletes refuses them on a table without a
        # replica identity, and dupewatch's own tables have no primary key: skipped groups leave the plan table.
        self.conn.exec_driver_sql(f"ALTER TABLE {name} REPLICA IDENTITY FULL")

    def foreign_owners(self, tables: list[sa.Table]) -> list[tuple[str, str, str]]:
        # restrict_access revoked every grant and enabled row-level security with no policy: a role that is
        # neither the owner (nor a member of it) nor superuser cannot read or write the table, or reads no row.
        rows = self.conn.execute(sa.text("""
            SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_catalog.pg_class c
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid IN (SELECT to_regclass(t) FROM unnest(CAST(:tables AS text[])) AS t)
              AND NOT pg_has_role(c.relowner, 'USAGE')
              AND NOT (has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')
                       AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE')
                       AND (NOT c.relrowsecurity
                            OR (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r
                                WHERE r.rolname = current_user)
                            OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)))
            ORDER BY c.relname"""), {"tables": [qualified(self.conn, t) for t in tables]}).all()
        return [(str(r.nspname), str(r.relname), str(r.owner)) for r in rows]

    def column_types(self, tables: Sequence[sa.Table]) -> list[dict[str, str]]:
        rows = self.conn.execute(sa.text("""
            SELECT n.i, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS spelled
            FROM unnest(CAST(:tables AS text[])) WITH ORDINALITY AS n(name, i)
            JOIN pg_catalog.pg_attribute a ON a.attrelid = to_regclass(n.name)
            WHERE a.attnum > 0 AND NOT a.attisdropped"""),
            {"tables": [qualified(self.conn, t) for t in tables]}).all()
        found: list[dict[str, str]] = [{} for _ in tables]
        for r in rows:
            found[int(r.i) - 1][str(r.attname)] = str(r.spelled)
        return found

    def user_triggers(self, tables: Sequence[sa.Table]) -> list[tuple[str, str]]:
        # (those that fire: one disabled, or for replicas only, changes nothing the fix copies)
        rows = self.conn.execute(sa.text(f"""
            SELECT c.relname, 'trigger ' || t.tgname AS what
            FROM unnest(CAST(:tables AS text[])) AS n(name)
            JOIN pg_catalog.pg_trigger t ON t.tgrelid = to_regclass(n.name)
            JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
            WHERE NOT t.tgisinternal AND {_FIRES.format(enabled="t.tgenabled")}
            UNION ALL
            SELECT c.relname, 'rule ' || r.rulename
            FROM unnest(CAST(:tables AS text[])) AS n(name)
            JOIN pg_catalog.pg_rewrite r ON r.ev_class = to_regclass(n.name)
            JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
            WHERE r.rulename <> '_RETURN' AND {_FIRES.format(enabled="r.ev_enabled")}
            ORDER BY 1, 2"""), {"tables": [qualified(self.conn, t) for t in tables]}).all()
        return [(str(r[0]), str(r[1])) for r in rows]

    def _index_enforced(self, schema: str | None, table: str, index: dict[str, Any]) -> bool:
        if not super()._index_enforced(schema, table, index):
            return False
        relation = qualified(self.conn, sa.Table(table, sa.MetaData(), schema=schema))
        valid = self.conn.execute(sa.text(
            "SELECT i.indisvalid FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :i AND i.indrelid = to_regclass(:t)"),
            {"i": index.get("name"), "t": relation}).scalar()
        return bool(valid)

    def index_names(self, table: sa.Table) -> set[str]:
        return set(self.conn.execute(sa.text(
            "SELECT c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = to_regclass(:t)"), {"t": qualified(self.conn, table)}).scalars())

    def lost_columns(self, table: sa.Table) -> bool:
        # A dropped column stays in pg_attribute (renamed, attisdropped) until the table itself is dropped.
        return bool(self.conn.execute(sa.text(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass(:t) AND attnum > 0 "
            "AND attisdropped)"), {"t": qualified(self.conn, table)}).scalar())

    def generated_columns(self, table: sa.Table) -> set[str]:
        return set(self.conn.execute(sa.text(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass(:t) AND attnum > 0 "
            "AND NOT attisdropped AND attgenerated <> ''"), {"t": qualified(self.conn, table)}).scalars())

    def unique_keys(self, table: sa.Table) -> list[UniqueKey]:
        # pg_index.indkey[k] = 0 marks an expression; pg_get_indexdef(oid, k, true) deparses it. An exclusion
        # constraint whose every operator is an equality (`EXCLUDE USING btree (email WITH =)`) refuses what a
        # unique one refuses, NULLs distinct alike: the operator is the equality of a btree (strategy 3) or hash
        # (strategy 1) operator family, as the server's own catalog classifies it. One also comparing by another
        # operator (`room WITH =, during WITH &&`) is not a key of its `=` columns.
        rows = self.conn.execute(sa.text("""
            SELECT ic.relname AS name, i.indisprimary AS primary,
                   ARRAY(SELECT a.attname FROM generate_series(1, i.indnkeyatts) k
                         LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k - 1]
                         ORDER BY k) AS columns,
                   ARRAY(SELECT CASE WHEN i.indkey[k - 1] = 0 THEN pg_get_indexdef(i.indexrelid, k, true) END
                         FROM generate_series(1, i.indnkeyatts) k ORDER BY k) AS expressions,
                   pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
                   coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false) AS nulls_not_distinct
            FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = to_regclass(:t) AND i.indisvalid AND i.indisready
              AND (i.indisunique OR (i.indisexclusion AND EXISTS (
                  SELECT FROM pg_catalog.pg_constraint x WHERE x.conindid = i.indexrelid AND x.contype = 'x'
                  AND NOT EXISTS (SELECT FROM unnest(x.conexclop) AS o(op) WHERE NOT EXISTS (
                      SELECT FROM pg_catalog.pg_amop ao JOIN pg_catalog.pg_am am ON am.oid = ao.amopmethod
                      WHERE ao.amopopr = o.op AND ((am.amname = 'btree' AND ao.amopstrategy = 3)
                                                   OR (am.amname = 'hash' AND ao.amopstrategy = 1)))))))
            ORDER BY ic.relname"""), {"t": qualified(self.conn, table)}).all()
        # indnullsnotdistinct exists from PostgreSQL 15 on (read through to_jsonb so older servers answer false).
        return [UniqueKey(r.name, tuple(r.columns), tuple(r.expressions), r.predicate, bool(r.primary),
                          bool(r.nulls_not_distinct)) for r in rows]
