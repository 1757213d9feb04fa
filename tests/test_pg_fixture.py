"""The throwaway PostgreSQL fixture itself (tests/pg.py): starts, gives fresh databases."""

from __future__ import annotations

import os

import pytest

from tests.pg import PostgresServer


def test_each_test_gets_a_fresh_database(pg_server: PostgresServer, pg_database: str) -> None:
    name = pg_database.rsplit("/", 1)[1]
    assert pg_server.psql("SELECT current_database()", db=name).strip() == name
    pg_server.psql("CREATE TABLE t (x int)", db=name)
    other = pg_server.new_database()
    try:
        # The template stays empty: what one test creates, the next does not see.
        assert (
            pg_server.psql("SELECT count(*) FROM pg_tables WHERE tablename = 't'", db=other).strip()
            == "0"
        )
    finally:
        pg_server.drop_database(other)


def test_durability_settings_are_the_defaults(pg_server: PostgresServer) -> None:
    assert pg_server.psql("SHOW fsync").strip() == "on"
    assert pg_server.psql("SHOW synchronous_commit").strip() == "on"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to switch to the postgres user")
def test_runs_as_postgres_outside_pytest_tmp(pg_server: PostgresServer, tmp_path) -> None:
    assert pg_server.data.owner() == "postgres"
    assert tmp_path not in pg_server.root.parents
