"""Rendering an audit: the table a person reads (worst first) and the config file `--write` produces.

The written config names its database by `url_env` (the URL, with any password, stays in the
environment), carries one `[[checks]]` entry per distinct table and key with a comment saying why, and is
validated with the project's own config loader before it is written.

A fleet (tenant schemas: `--schema` given for each): a check found alike (same table name, key and options) in
`FLEET_MIN_SCHEMAS` schemas or more is written once, as a template over a `[sources.X]` listing those schemas
(`discover = "schemas"`), not once per tenant.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.audit import AuditReport
from monitor.audit.findings import DATABASE_NAME, Finding
from monitor.config import config_from_dict, table_name_parts

URL_ENV = "DUPEWATCH_URL"
HEADERS = ("SEVERITY", "KIND", "TABLE", "COLUMNS", "GROUPS", "EXCESS ROWS", "EVIDENCE")
EVIDENCE_WIDTH = 110
FLEET_MIN_SCHEMAS = 3  # two copies of a table may be two things; three alike tenants make a fleet
FLEET_SOURCE = "tenants"
SCHEMAS_QUERY = "SELECT schema_name FROM information_schema.schemata"


def table_lines(report: AuditReport, *, shorten: bool = True) -> list[str]:
    """The human report: one row per finding, worst first, then notes and a summary line. The evidence is cut
    to EVIDENCE_WIDTH only for a terminal (`shorten`); names print with control characters escaped."""
    cut = _shorten if shorten else _printable
    rows = [(f.severity, f.kind, _printable(f.table), _printable(", ".join(f.columns)) or "-",
             _count(f.duplicate_groups, f.estimated), _count(f.excess_rows, f.estimated), cut(f.evidence))
            for f in report.findings]
    lines: list[str] = []
    if rows:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        for cells in (HEADERS, *rows):
            out = [c.rjust(widths[i]) if i in (4, 5) else c.ljust(widths[i]) for i, c in enumerate(cells)]
            lines.append("  ".join(out).rstrip())
        lines.append("")
    lines.extend(f"note: {note}" for note in report.notes)
    high = sum(f.severity == "high" for f in report.findings)
    lines.append(f"audited {report.tables} table(s) of {', '.join(report.schemas)} in {report.url}: "
                 f"{report.candidates} candidate(s), {len(report.findings)} finding(s), {high} high, "
                 f"in {report.duration_ms / 1000:.1f} s" + ("; ~ marks estimates" if any(
                     f.estimated for f in report.findings) else ""))
    return lines


def _count(value: int | None, estimated: bool) -> str:
    if value is None:
        return "-"
    return f"~{value:,}" if estimated else f"{value:,}"


def _shorten(text: str) -> str:
    text = _printable(text)
    return text if len(text) <= EVIDENCE_WIDTH else text[:EVIDENCE_WIDTH - 1] + "…"


def _printable(text: str) -> str:
    """`text` with tabs, newlines and other control characters shown as escapes, so a hostile table name
    cannot break the table's lines."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def config_checks(findings: list[Finding]) -> list[tuple[list[Finding], dict[str, Any]]]:
    """One check per distinct table and key (two kinds may point at the same columns), names made unique."""
    merged: dict[tuple[str, tuple[str, ...]], tuple[list[Finding], dict[str, Any]]] = {}
    for finding in findings:
        if finding.check is None:  # drafts (no evidence their fix would be right) are written commented out
            continue
        key = (finding.check["table"], tuple(finding.check["key"]))
        if key in merged:
            merged[key][0].append(finding)
        else:
            merged[key] = ([finding], dict(finding.check))
    used: set[str] = set()
    for _findings, check in merged.values():
        name, n = check["name"], 2
        while check["name"] in used:
            check["name"] = f"{name}-{n}"
            n += 1
        used.add(check["name"])
    return list(merged.values())


Checks = list[tuple[list[Finding], dict[str, Any]]]


def fleet_templates(checks: Checks) -> tuple[Checks, dict[str, list[str]]]:
    """`checks` with those alike in `FLEET_MIN_SCHEMAS` schemas or more merged into one template each (naming
    its source), and the sources (name -> the schemas each lists)."""
    alike: dict[str, list[tuple[str, list[Finding], dict[str, Any]]]] = {}
    for findings, check in checks:
        parts = table_name_parts(check["table"]) or []
        if len(parts) != 2:
            continue
        signature = {k: v for k, v in check.items() if k not in ("name", "description", "table")}
        alike.setdefault(json.dumps([parts[1], signature], sort_keys=True), []).append((parts[0], findings, check))
    merged: set[int] = set()
    templates: Checks = []
    sources: dict[frozenset[str], str] = {}
    for group in alike.values():
        schemas = sorted({schema for schema, _f, _c in group})
        if len(schemas) < FLEET_MIN_SCHEMAS:
            continue
        source = sources.setdefault(frozenset(schemas), FLEET_SOURCE if not sources else
                                    f"{FLEET_SOURCE}-{len(sources) + 1}")
        findings = [f for _s, found, _c in group for f in found]
        first = group[0][2]
        table = table_name_parts(first["table"]) or []
        template = {k: v for k, v in first.items() if k != "database"}
        template.update(source=source, table=_table_part(table[1]))
        templates.append((findings, template))
        merged.update(id(c) for _s, _f, c in group)
    kept = [(f, c) for f, c in checks if id(c) not in merged]
    used = {c["name"] for _f, c in kept}
    for _findings, template in templates:
        name, n = template["name"], 2
        while template["name"] in used:
            template["name"] = f"{name}-{n}"
            n += 1
        used.add(template["name"])
    return kept + templates, {name: sorted(schemas) for schemas, name in sources.items()}


def _table_part(name: str) -> str:
    return '"' + name.replace('"', '""') + '"' if any(ch in name for ch in '."`') else name


def config_text(report: AuditReport, *, statement_timeout: str = "30s") -> str | None:
    """The TOML of a complete config watching every finding that has a live check, with the drafted ones
    commented out under why; None when no finding has a live check (a config needs one)."""
    checks = config_checks(report.findings)
    if not checks:
        return None
    watched = {(c["table"], tuple(c["key"])) for _f, c in checks}
    checks, sources = fleet_templates(checks)
    lines = [
        f"# Written by `dupewatch audit` on {datetime.now().astimezone():%Y-%m-%d %H:%M %Z} from {report.url}.",
        f"# The database URL is read from ${URL_ENV}, so no password is stored here:",
        f"#   export {URL_ENV}='{report.url}'   (with the real password), then `dupewatch --config FILE`",
        "# Every option is documented in config.example.toml.",
        "",
    ]
    if any("database" in c for _f, c in checks):
        lines += [f"[databases.{DATABASE_NAME}]", f"url_env = {_toml(URL_ENV)}",
                  f"statement_timeout = {_toml(statement_timeout)}", ""]
    for source, schemas in sources.items():
        lines += ["# The tenant schemas the audit found these tables alike in; widen `include` to watch new ones.",
                  f"[sources.{source}]", f"url_env = {_toml(URL_ENV)}", 'discover = "schemas"',
                  f"schemas_query = {_toml(SCHEMAS_QUERY)}",
                  f"include = {_toml('^(?:' + '|'.join(re.escape(s) for s in schemas) + ')$')}",
                  f"statement_timeout = {_toml(statement_timeout)}", ""]
    for findings, check in checks:
        lines.extend(f"# {f.severity} {f.kind}: {_one_line(f.evidence)}" for f in findings)
        lines.append("[[checks]]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in check.items())
        lines.append("")
    drafts = [f for f in report.findings if f.draft is not None
              and (f.draft["table"], tuple(f.draft["key"])) not in watched]
    if drafts:
        lines += ["# Not enabled: the evidence does not yet show that these checks' fixes would be right.", ""]
    for finding in drafts:
        assert finding.draft is not None
        lines.append(f"# {finding.severity} {finding.kind}, not enabled: {_one_line(finding.draft_reason or '')}")
        lines.append(f"# evidence: {_one_line(finding.evidence)}")
        lines.append("# [[checks]]")
        lines.extend(f"# {k} = {_toml(v)}" for k, v in finding.draft.items())
        lines.append("")
    text = "\n".join(lines)
    config_from_dict(tomllib.loads(text))  # what we write must load: fail here, not in the user's next command
    return text


def write_config(path: Path, text: str) -> None:
    """Create `path` with `text`; FileExistsError when it already exists (never overwrites)."""
    with path.open("x", encoding="utf-8") as out:
        out.write(text)


def _toml(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return _toml_string(value)
    return json.dumps(value)


def _toml_string(text: str) -> str:
    """A TOML basic string: characters outside ASCII kept as they are (json.dumps would write an emoji as a
    surrogate pair, which TOML rejects), quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _one_line(text: str) -> str:
    return _printable(" ".join(text.split()))
