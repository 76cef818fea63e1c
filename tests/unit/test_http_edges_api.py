"""The finance API's edge: path and query parameters are checked before any SQL (a NUL used to
reach PostgreSQL and come back as a plain-text 500), and every error, FastAPI's own included,
answers in the one JSON shape of ``entrypoints.http_errors``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.settings import Settings
from entrypoints.api import create_app
from ledger import access

NOW = datetime(2026, 12, 1, tzinfo=UTC)

SHAPE = {"code", "detail", "request_id"}


class Connection:
    """Answers every query with ``failure`` raised: the parameter checks must come first."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure
        self.queries: list[str] = []

    def execute(self, query: str, *args: Any, **kw: Any) -> Any:
        self.queries.append(query)
        raise self.failure


class Pool:
    def __init__(self, connection: Connection | None = None, refuse: bool = False) -> None:
        self._connection = connection or Connection(RuntimeError("no query expected"))
        self._refuse = refuse

    @contextmanager
    def connection(self, timeout: float = 0) -> Iterator[Connection]:
        if self._refuse:
            raise psycopg.OperationalError("connection refused at 10.0.0.7:5432")
        yield self._connection


def api(pool: Pool | None = None) -> TestClient:
    # No lifespan (no ``with``): the pool is a fake set here, not a database.
    app = create_app(Settings())
    app.state.pool = pool or Pool()
    return TestClient(app, raise_server_exceptions=False)


def test_a_nul_in_a_path_is_a_json_400() -> None:
    connection = Connection(RuntimeError("unreachable"))
    answer = api(Pool(connection)).get("/payments/pay%00ment")
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == SHAPE and answer.json()["code"] == "INVALID_PARAMETER"
    assert "\\x00" in answer.json()["detail"]
    assert connection.queries == []


def test_a_nul_in_a_query_is_a_json_400_naming_the_parameter() -> None:
    answer = api().get("/balances", params={"prefix": "assets\x00"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "INVALID_PARAMETER" and "'prefix'" in answer.json()["detail"]


@pytest.mark.parametrize("value", ["a\u202eb", "a\nb", "x" * 1001])
def test_unprintable_or_huge_query_values_are_refused(value: str) -> None:
    answer = api().get("/ledger/counts", params={"group": value})
    assert answer.status_code == 400 and answer.json()["code"] == "INVALID_PARAMETER"
    assert "'group'" in answer.json()["detail"] and len(answer.json()["detail"]) < 300


class KeyedConnection(Connection):
    """Holds one API key (finance:read of ``net-a``) and refuses every other query."""

    def __init__(self) -> None:
        super().__init__(RuntimeError("only the key lookup may run"))
        self.key = access.generate()

    def execute(self, query: str, *args: Any, **kw: Any) -> Any:
        if "FROM api_keys" not in query:
            return super().execute(query, *args, **kw)
        self.queries.append(query)
        row = (self.key.key_id, "net-a", ["finance:read"], self.key.secret_hash, "", NOW, None)
        return _Rows([row])


class _Rows:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


def keyed_api(connection: KeyedConnection) -> TestClient:
    client = api(Pool(connection))
    client.app.state.schema_current = True  # type: ignore[attr-defined]
    client.headers["Authorization"] = f"Bearer {connection.key.token}"
    return client


def test_parameters_are_checked_after_the_key_and_before_any_other_sql() -> None:
    """The key comes first (401 before 422: an unauthenticated caller learns nothing about the
    parameters); its lookup binds only an id the key's pattern admits (12 hex characters). Then
    the parameters, before any query of the endpoint."""
    assert api().get("/payments/" + "p" * 256).status_code == 401
    connection = KeyedConnection()
    answer = keyed_api(connection).get("/payments/" + "p" * 256)
    assert answer.status_code == 422 and answer.json()["code"] == "INVALID_REQUEST"
    assert "payment_id" in answer.json()["detail"]
    assert len(connection.queries) == 1 and "FROM api_keys" in connection.queries[0]


def test_a_malformed_parameter_is_named_without_echoing_it() -> None:
    answer = keyed_api(KeyedConnection()).get("/balances", params={"limit": "<script>"})
    assert answer.status_code == 422 and set(answer.json()) == SHAPE
    assert answer.json()["code"] == "INVALID_REQUEST"
    assert "limit" in answer.json()["detail"] and "<script>" not in answer.text


def test_unknown_routes_and_methods_answer_in_the_one_shape() -> None:
    missing = api().get("/no/such/route")
    assert missing.status_code == 404 and set(missing.json()) == SHAPE
    assert missing.json()["code"] == "NOT_FOUND"
    wrong = api().post("/balances")
    assert wrong.status_code == 405 and wrong.json()["code"] == "METHOD_NOT_ALLOWED"


def test_an_unreachable_database_is_a_503_without_its_address() -> None:
    answer = api(Pool(refuse=True)).get("/health")
    assert answer.status_code == 503 and set(answer.json()) == SHAPE
    assert answer.json()["code"] == "DATABASE_UNAVAILABLE"


def test_an_unexpected_error_is_a_500_that_leaks_nothing() -> None:
    secret = RuntimeError("password=hunter2 in /srv/evledger/finance.py line 9")
    answer = api(Pool(Connection(secret))).get("/health")
    assert answer.status_code == 500 and set(answer.json()) == SHAPE
    assert answer.json()["code"] == "INTERNAL_ERROR"
    assert "hunter2" not in answer.text and "Traceback" not in answer.text
    assert answer.json()["request_id"] in answer.json()["detail"]


def test_a_sane_request_id_is_kept_and_an_odd_one_replaced() -> None:
    kept = api().get("/no/such/route", headers={"X-Request-ID": "abc-123"})
    assert kept.json()["request_id"] == "abc-123" and kept.headers["X-Request-ID"] == "abc-123"
    odd = api().get("/no/such/route", headers={"X-Request-ID": "a b\tc"})
    assert odd.json()["request_id"] != "a b\tc"
