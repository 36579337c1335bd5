"""Writing the demo rows into the demo database, and counting what is left of them.

`seed` upserts every generated row by id: a missing row is inserted, a row that differs
from the generated one (anonymised, or changed by hand) is set back, an identical row is
left alone, so seeding twice changes nothing the second time and adds no duplicate. Rows
outside the generated ids (the hand-written ones of `config/demo/hosting-data.sql`, those a
test or an operator inserted) are never touched. The identity of each table is moved past
the generated ids, so a later insert without an id does not collide with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from lethe.demo.data import COLUMNS, DemoData, Row


@dataclass(frozen=True, slots=True)
class SeedResult:
    written: Mapping[str, int]
    """Rows inserted or set back, by table (0: the table already held every generated row)."""
    total: int
    """Generated rows, all tables."""


def seed(conn: psycopg.Connection[Any], data: DemoData) -> SeedResult:
    """Upsert `data` into the tables of `conn`'s database in one transaction."""
    written: dict[str, int] = {}
    with conn.transaction():
        for table, rows in data.tables.items():
            written[table] = upsert_rows(conn, table, rows) if rows else 0
            _advance_identity(conn, table)
    return SeedResult(written, data.count())


def upsert_rows(conn: psycopg.Connection[Any], table: str, rows: Sequence[Row]) -> int:
    """Insert the rows missing by id, set back those that differ; the count of both."""
    columns = COLUMNS[table]
    names = sql.SQL(", ").join(sql.Identifier(column) for column in columns)
    changing = [column for column in columns if column != "id"]
    statement = sql.SQL(
        "INSERT INTO {table} ({names}) VALUES ({values}) ON CONFLICT (id) DO UPDATE SET {sets} "
        "WHERE ({current}) IS DISTINCT FROM ({wanted}) RETURNING id"
    ).format(
        table=sql.Identifier(table),
        names=names,
        values=sql.SQL(", ").join(sql.Placeholder() for _ in columns),
        sets=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(column)) for column in changing
        ),
        current=sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.Identifier(table), sql.Identifier(column))
            for column in changing
        ),
        wanted=sql.SQL(", ").join(
            sql.SQL("EXCLUDED.{}").format(sql.Identifier(column)) for column in changing
        ),
    )
    with conn.cursor() as cursor:
        cursor.executemany(
            statement, [[row[column] for column in columns] for row in rows], returning=True
        )
        count = 0
        while True:
            count += len(cursor.fetchall())
            if not cursor.nextset():
                return count


def _advance_identity(conn: psycopg.Connection[Any], table: str) -> None:
    """Move the table's identity past its largest id (never back)."""
    conn.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence(%(table)s, 'id'), "
            "greatest((SELECT coalesce(max(id), 1) FROM {table}), "
            "(SELECT last_value FROM {sequence})))"
        ).format(
            table=sql.Identifier(table),
            sequence=sql.Identifier(*_sequence_name(conn, table).split(".", 1)),
        ),
        {"table": table},
    )


def _sequence_name(conn: psycopg.Connection[Any], table: str) -> str:
    found = conn.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()
    if found is None or found[0] is None:
        raise LookupError(f"table {table} has no identity on id")
    return str(found[0])


def row_counts(conn: psycopg.Connection[Any], tables: Any = tuple(COLUMNS)) -> dict[str, int]:
    """Rows now in each demo table (all rows, generated or not)."""
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {name}, count(*) FROM {table}").format(
            name=sql.Literal(table), table=sql.Identifier(table)
        )
        for table in tables
    )
    return {str(table): int(count) for table, count in conn.execute(query).fetchall()}
