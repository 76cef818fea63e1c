"""The sessions processor's look-ups cost what the batch asks for, not what the tables hold.

Every batch looks stored rows up by key; the tests fill the tables, switch PostgreSQL to the
generic plans prepared statements end on, and check that each look-up probes an index and
returns exactly the rows a plain reading of its contract gives.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from connectors import postgres
from connectors import sessions_store as store
from entrypoints.bootstrap import App

SESSIONS = 20_000
READINGS_PER_SESSION = 20


@pytest.fixture(scope="module")
def filled(app: App) -> Iterator[str]:
    """A migrated database with 400k meter readings of 20k sessions, and their sessions."""
    name = f"sessions_store_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(app.database_url, name)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO session_meter_values SELECT 'ST' || (i %% 200), 'TX' || (i / %s),"
            " i %% %s, 'S-' || (i / %s), now(), i, 1, 1, 'e' || i"
            " FROM generate_series(0, %s) AS i",
            (READINGS_PER_SESSION, READINGS_PER_SESSION, READINGS_PER_SESSION,
             SESSIONS * READINGS_PER_SESSION - 1),
        )  # fmt: skip
        conn.execute("ANALYZE session_meter_values")
        conn.commit()
    try:
        yield url
    finally:
        postgres.drop_database(app.database_url, name)


def test_meter_rows_of_sessions_and_keys_each_once(filled: str) -> None:
    sessions = [f"S-{i}" for i in range(0, 2000, 3)]
    # Keys of readings in sessions not asked for, one in an asked-for session (found twice),
    # and one that does not exist.
    keys = [(f"S-{i}", f"ST{(i * 20 + 5) % 200}", f"TX{i}", 5) for i in range(5000, 5100)]
    keys += [("S-0", "ST0", "TX0", 0), ("S-1", "ST-nowhere", "TX1", 1)]
    with psycopg.connect(filled) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        for _ in range(2):  # the second call runs on psycopg's prepared statements
            rows = store.load_meter_rows(conn, keys, sessions)
        assert len(rows) == len(sessions) * READINGS_PER_SESSION + 100
        assert len({r.key for r in rows}) == len(rows)
        by_key = {f"S-{i}" for i in range(5000, 5100)}
        assert {r.session_id for r in rows} == {*sessions, *by_key}
        assert all(r.reading.seq_no == 5 for r in rows if r.session_id in by_key)


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        (store.METER_ROWS_OF_SESSIONS, (["S-1"],)),
        (store.METER_ROWS_BY_KEY, (["S-1"], ["ST20"], ["TX1"], [0])),
    ],
)
def test_meter_look_ups_probe_the_index_under_the_generic_plan(
    filled: str, sql: str, params: tuple[object, ...]
) -> None:
    with psycopg.connect(filled) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        plan = "\n".join(str(r[0]) for r in conn.execute(f"EXPLAIN (COSTS OFF) {sql}", params))
    assert "Seq Scan on session_meter_values" not in plan and "Index Scan" in plan, plan
