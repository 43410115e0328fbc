"""Checks a user's SQL before the query engine runs it, and scopes it to one organisation.

Only one read statement (SELECT / UNION / WITH ...) is accepted. Its tables must be lake tables
named ``namespace.table`` (or the statement's own CTEs): no table functions (``file()``,
``url()``, ``icebergLocal()``...), no ``system`` tables, no ``SETTINGS`` or ``FORMAT`` clauses.
The resolver then replaces every lake table with a subquery over the engine's source filtered on
the caller's organisation, bound as the parameter ``wb_org``; so whatever the statement says,
it sees one organisation's rows.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from workbench.errors import QueryError

ORG_PARAM = "wb_org"
RESERVED_PREFIX = "wb_"


def check_statement(sql: str, known_tables: set[str]) -> list[str]:
    """Validate ``sql``; return the lake tables it reads (``namespace.table``)."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="clickhouse") if s is not None]
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first else ""
        raise QueryError(f"SQL could not be parsed{where}: {first.get('description', exc)}") from None
    if len(statements) != 1:
        raise QueryError(f"send one statement at a time (got {len(statements)})")
    stmt = statements[0]
    if not isinstance(stmt, exp.Query):
        raise QueryError(f"only read statements (SELECT, WITH, UNION) are allowed, not "
                         f"{stmt.key.upper()}")
    for node in stmt.find_all(exp.Select):
        if node.args.get("settings") or node.args.get("format"):
            raise QueryError("SETTINGS and FORMAT clauses are not allowed; the workbench sets them")
    ctes = {cte.alias_or_name for cte in stmt.find_all(exp.CTE)}
    used: list[str] = []
    for table in stmt.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise QueryError(f"table functions are not allowed ({table.this.sql('clickhouse')[:60]}); "
                             f"read the lake tables by name: {', '.join(sorted(known_tables))}")
        if table.args.get("catalog"):
            raise QueryError(f"unknown table '{table.sql('clickhouse')}'")
        name = f"{table.db}.{table.name}" if table.db else table.name
        if not table.db and name in ctes:
            continue
        if name not in known_tables:
            raise QueryError(f"unknown table '{name}'; tables: {', '.join(sorted(known_tables))}")
        used.append(name)
    return used


def check_params(params: dict[str, object]) -> None:
    for key in params:
        if key.startswith(RESERVED_PREFIX):
            raise QueryError(f"parameter names starting with '{RESERVED_PREFIX}' are reserved "
                             f"(got '{key}')")


def rewrite_tables(sql: str, source_for: Callable[[str], str]) -> str:
    """Replace each ``namespace.table`` reference in ``sql`` by ``source_for(name)``.

    Works on sqlglot's tokens (so names inside string literals and comments stay untouched) and
    splices into the original text, so the rest of the statement reaches the engine as written.
    An unaliased table keeps its name as alias, so ``performance_daily.spend`` still resolves.
    """
    tokens = sqlglot.tokenize(sql, read="clickhouse")
    out: list[str] = []
    last = 0
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if (i + 2 < len(tokens) and tokens[i + 1].token_type == TokenType.DOT
                and t.token_type == TokenType.VAR and tokens[i + 2].token_type == TokenType.VAR
                and (i == 0 or tokens[i - 1].token_type != TokenType.DOT)):
            name = f"{t.text}.{tokens[i + 2].text}"
            following = tokens[i + 3] if i + 3 < len(tokens) else None
            if following is None or following.token_type != TokenType.DOT:
                replacement = source_for(name)
                if replacement:
                    aliased = following is not None and following.token_type in (TokenType.ALIAS, TokenType.VAR)
                    out.append(sql[last:t.start])
                    out.append(replacement if aliased else f"{replacement} AS {tokens[i + 2].text}")
                    last = tokens[i + 2].end + 1
                    i += 3
                    continue
        i += 1
    out.append(sql[last:])
    return "".join(out)
