"""The emulator's state in SQLite: one table per object type, the API object as a JSON document plus the
columns that are looked up, filtered or kept unique.

One connection guarded by one re-entrant lock: every API request runs as one transaction
(`with store.transaction():`), so a rejected multi-invoice request leaves nothing behind and concurrent
requests never see half an import. In memory by default; a file path keeps state across restarts.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

# table → indexed columns (besides `seq` and `doc`). Uniqueness mirrors ChartMogul: external ids are
# unique per data source (docs/sources.md#cm-idempotency); data source names per account (#cm-data-sources).
_SCHEMA: dict[str, str] = {
    "data_sources": "uuid TEXT UNIQUE NOT NULL, name TEXT UNIQUE NOT NULL",
    "customers": "uuid TEXT UNIQUE NOT NULL, data_source_uuid TEXT NOT NULL, external_id TEXT NOT NULL, email TEXT",
    # every external id a customer answers to (a merge adds the merged customer's ids, docs/sources.md#cm-customers)
    "customer_ids": "data_source_uuid TEXT NOT NULL, external_id TEXT NOT NULL, customer_uuid TEXT NOT NULL, "
    "UNIQUE(data_source_uuid, external_id)",
    "plans": "uuid TEXT UNIQUE NOT NULL, data_source_uuid TEXT NOT NULL, external_id TEXT NOT NULL, "
    "UNIQUE(data_source_uuid, external_id)",
    "invoices": "uuid TEXT UNIQUE NOT NULL, data_source_uuid TEXT NOT NULL, customer_uuid TEXT NOT NULL, "
    "external_id TEXT NOT NULL, UNIQUE(data_source_uuid, external_id)",
    "line_items": "uuid TEXT UNIQUE NOT NULL, invoice_uuid TEXT NOT NULL, data_source_uuid TEXT NOT NULL, "
    "external_id TEXT, subscription_uuid TEXT, UNIQUE(data_source_uuid, external_id)",
    "transactions": "uuid TEXT UNIQUE NOT NULL, invoice_uuid TEXT NOT NULL, data_source_uuid TEXT NOT NULL, "
    "external_id TEXT, UNIQUE(data_source_uuid, external_id)",
    "subscriptions": "uuid TEXT UNIQUE NOT NULL, data_source_uuid TEXT NOT NULL, customer_uuid TEXT NOT NULL, "
    "external_id TEXT NOT NULL, UNIQUE(data_source_uuid, customer_uuid, external_id)",
    "subscription_events": "data_source_uuid TEXT NOT NULL, external_id TEXT, customer_external_id TEXT, "
    "subscription_external_id TEXT, event_type TEXT, UNIQUE(data_source_uuid, external_id)",
    "json_imports": "uuid TEXT UNIQUE NOT NULL, data_source_uuid TEXT NOT NULL, external_id TEXT, status TEXT",
    # a queued import's records (up to 5 MB), apart from its status document: read once, when processing starts
    "json_import_payloads": "uuid TEXT UNIQUE NOT NULL, data_source_uuid TEXT NOT NULL",
    # custom attribute definitions (key → type), account-wide like ChartMogul's custom attribute settings
    "custom_attributes": "key TEXT UNIQUE NOT NULL",
}
_COLUMNS: dict[str, set[str]] = {
    table: {part.split()[0] for part in re.sub(r"UNIQUE\([^)]*\)", "", schema).split(",") if part.strip()} | {"seq"}
    for table, schema in _SCHEMA.items()
}


class Store:
    def __init__(self, path: str | None = None) -> None:
        self.path = path or ":memory:"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        self._depth = 0
        for table, schema in _SCHEMA.items():
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT, {schema})"
            )
        self._db.execute("CREATE INDEX IF NOT EXISTS invoices_customer ON invoices(customer_uuid)")
        self._db.execute("CREATE INDEX IF NOT EXISTS line_items_invoice ON line_items(invoice_uuid)")
        self._db.execute("CREATE INDEX IF NOT EXISTS line_items_subscription ON line_items(subscription_uuid)")
        self._db.execute("CREATE INDEX IF NOT EXISTS customers_source ON customers(data_source_uuid)")
        self._db.execute("CREATE INDEX IF NOT EXISTS transactions_invoice ON transactions(invoice_uuid)")
        self._db.execute("CREATE INDEX IF NOT EXISTS subscriptions_customer ON subscriptions(customer_uuid)")
        self._db.execute("CREATE INDEX IF NOT EXISTS customers_email ON customers(email)")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing; nests (only the outermost level commits or rolls back)."""
        with self._lock:
            outermost = self._depth == 0
            if outermost:
                self._db.execute("BEGIN")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outermost:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outermost:
                self._db.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested all-or-nothing unit inside a transaction (one invoice in `partial` mode)."""
        with self._lock:
            self._db.execute("SAVEPOINT unit")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK TO unit")
                self._db.execute("RELEASE unit")
                raise
            self._db.execute("RELEASE unit")

    # ---- generic row operations ----------------------------------------------------------------------

    def _check(self, table: str, columns: Any) -> None:
        unknown = set(columns) - _COLUMNS[table]
        if unknown:
            raise KeyError(f"{table} has no column(s) {sorted(unknown)}")

    def insert(self, table: str, doc: dict[str, Any] | None = None, **columns: Any) -> int:
        self._check(table, columns)
        names = [*columns, "doc"]
        with self._lock:
            cursor = self._db.execute(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                [*columns.values(), json.dumps(doc) if doc is not None else None],
            )
            return int(cursor.lastrowid or 0)

    def _where(self, table: str, where: dict[str, Any]) -> tuple[str, list[Any]]:
        self._check(table, where)
        clauses, values = [], []
        for column, value in where.items():
            if value is None:
                clauses.append(f"{column} IS NULL")
            elif isinstance(value, list | tuple | set):
                # one JSON parameter instead of one per item: no limit on the number of items
                clauses.append(f"{column} IN (SELECT value FROM json_each(?))")
                values.append(json.dumps(list(value)))
            else:
                clauses.append(f"{column} = ?")
                values.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", values

    def rows(
        self, table: str, *, after_seq: int = 0, limit: int | None = None, **where: Any
    ) -> list[tuple[int, dict[str, Any]]]:
        """`(seq, doc)` in insertion order, after `after_seq` (the cursor), at most `limit`."""
        clause, values = self._where(table, where)
        clause += (" AND " if clause else " WHERE ") + "seq > ?"
        values.append(after_seq)
        sql = f"SELECT seq, doc FROM {table}{clause} ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            return [(seq, json.loads(doc) if doc else {}) for seq, doc in self._db.execute(sql, values)]

    def docs(self, table: str, **where: Any) -> list[dict[str, Any]]:
        return [doc for _, doc in self.rows(table, **where)]

    def one(self, table: str, **where: Any) -> dict[str, Any] | None:
        found = self.rows(table, limit=1, **where)
        return found[0][1] if found else None

    def seq_of(self, table: str, **where: Any) -> int | None:
        found = self.rows(table, limit=1, **where)
        return found[0][0] if found else None

    def column_values(self, table: str, column: str, **where: Any) -> list[Any]:
        self._check(table, [column])
        clause, values = self._where(table, where)
        with self._lock:
            return [row[0] for row in self._db.execute(f"SELECT {column} FROM {table}{clause} ORDER BY seq", values)]

    def exists(self, table: str, **where: Any) -> bool:
        clause, values = self._where(table, where)
        with self._lock:
            return self._db.execute(f"SELECT 1 FROM {table}{clause} LIMIT 1", values).fetchone() is not None

    def count(self, table: str, **where: Any) -> int:
        clause, values = self._where(table, where)
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {table}{clause}", values).fetchone()[0])

    def update(self, table: str, key: dict[str, Any], doc: dict[str, Any] | None = None, **columns: Any) -> None:
        self._check(table, columns)
        assignments = [f"{column} = ?" for column in columns]
        values: list[Any] = list(columns.values())
        if doc is not None:
            assignments.append("doc = ?")
            values.append(json.dumps(doc))
        if not assignments:
            return
        clause, where_values = self._where(table, key)
        with self._lock:
            self._db.execute(f"UPDATE {table} SET {', '.join(assignments)}{clause}", values + where_values)

    def delete(self, table: str, **where: Any) -> int:
        clause, values = self._where(table, where)
        with self._lock:
            return self._db.execute(f"DELETE FROM {table}{clause}", values).rowcount

    # ---- whole state ---------------------------------------------------------------------------------

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every stored object by table (for `/_admin/state`)."""
        with self._lock:
            return {table: self.docs(table) for table in _SCHEMA}

    def reset(self) -> None:
        with self.transaction():
            for table in _SCHEMA:
                self._db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
