"""Creating tables that several processes may create at the same moment.

SQLAlchemy's ``checkfirst`` looks, then creates: two processes starting together (two web
workers, a web process and its job worker) can both look, both find nothing, and one of them
fails with "table ... already exists" (SQLite), "relation ... already exists" or a duplicate
key in ``pg_type`` (PostgreSQL). The losing process tries again: its second look finds the
tables.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import Table, exc
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["create_tables"]

_ATTEMPTS = 3


async def create_tables(
    engine: AsyncEngine,
    *tables: Table,
    lock: contextlib.AbstractAsyncContextManager[Any] | None = None,
    sqlite_wal: bool = False,
) -> None:
    """Create ``tables`` (and their indexes) where they do not exist, in one transaction.

    ``lock``: held around each attempt (SQLite's one-writer lock). ``sqlite_wal``: switch a
    SQLite file to WAL mode first (the file keeps it).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database refused, other than for a table another
            process created meanwhile (then the creation is tried again, up to three times).
    """
    for attempt in range(_ATTEMPTS):
        try:
            async with lock or contextlib.nullcontext(), engine.begin() as conn:
                if sqlite_wal:
                    await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                for table in tables:
                    await conn.run_sync(table.create, checkfirst=True)
            return
        except exc.DBAPIError as error:
            if attempt == _ATTEMPTS - 1 or not _created_meanwhile(error):
                raise


def _created_meanwhile(error: exc.DBAPIError) -> bool:
    if isinstance(error, exc.IntegrityError):  # PostgreSQL: the table's row type, pg_type
        return "pg_type" in str(error.orig)
    return "already exists" in str(error.orig)
