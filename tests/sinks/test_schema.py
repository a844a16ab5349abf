"""Tables created by processes that start together: ``DatabaseWriter.create_all`` and the
demo's own table go through ``sinks._schema.create_tables``, which tries again when another
process created a table between its look and its ``CREATE``."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, event, exc, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from anthropic_rx import sinks
from anthropic_rx.sinks._schema import create_tables
from tests.sinks._postgres import postgres_url, unique_table

WAIT = 20.0


def a_table(name: str) -> Table:
    return Table(name, MetaData(), Column("id", String(50), primary_key=True))


async def names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_a_table_made_by_another_process_between_look_and_create_is_tried_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db"
    table = a_table("raced")
    made: list[str] = []

    def another_process_first(*_args: Any, **_kwargs: Any) -> None:
        # After SQLAlchemy looked and found nothing, before its CREATE: another connection
        # (as another process would) makes the table.
        if not made:
            with sqlite3.connect(path) as other:
                other.execute("CREATE TABLE raced (id VARCHAR(50) PRIMARY KEY)")
            made.append("raced")

    event.listen(table, "before_create", another_process_first)
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with asyncio.timeout(WAIT):
            await create_tables(engine, table)
        assert made == ["raced"]
        assert "raced" in await names(engine)
    finally:
        await engine.dispose()


async def test_another_error_is_not_tried_again(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/db")
    attempts: list[int] = []
    table = a_table("refused")

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        attempts.append(1)
        raise exc.OperationalError("CREATE TABLE refused", {}, sqlite3.OperationalError("disk I/O"))

    event.listen(table, "before_create", refuse)
    try:
        with pytest.raises(exc.OperationalError, match="disk I/O"):
            await create_tables(engine, table)
        assert attempts == [1]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
async def test_writers_of_many_processes_create_one_table_at_once(
    kind: str, tmp_path: Path
) -> None:
    url = postgres_url() if kind == "postgres" else f"sqlite+aiosqlite:///{tmp_path}/db"
    name = unique_table()
    # One engine each, as processes have: nothing in this process orders their creations.
    writers = [sinks.DatabaseWriter(url, table=name) for _ in range(8)]
    try:
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(writer.create_all() for writer in writers))
        assert name in await names(writers[0].engine)
    finally:
        if kind == "postgres":
            async with writers[0].engine.begin() as conn:
                await conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
        for writer in writers:
            await writer.aclose()
