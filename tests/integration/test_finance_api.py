"""The finance API over a projected book, checked against the independent recomputation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from entrypoints.api import create_app
from entrypoints.bootstrap import App
from ledger.payments.state import PaymentStatus
from processors.ledger_projector import TOPICS, build_ledger_processor
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_projector import (
    publish,
    run_to,
    scratch_book,
    start_group,
    stored_offsets,
)
from tests.ledger_oracle import Book, Stream, mixed_stream, read_range, recompute


@dataclass
class Projected:
    client: TestClient
    book: Book
    stream: Stream
    network: str


@pytest.fixture(scope="module")
def projected(app: App) -> Iterator[Projected]:
    network = f"net-{uuid.uuid4().hex[:8]}"
    stream = mixed_stream(network, payments_count=64, seed=5)
    with scratch_book(app) as url:
        group, starts = start_group(app, url)
        processor = build_ledger_processor(app, group=group, database_url=url, batch_size=50)
        try:
            publish(app, stream.phase1)
            run_to(processor, end_offsets(app, list(TOPICS)))
            publish(app, stream.phase2)
            run_to(processor, end_offsets(app, list(TOPICS)))
        finally:
            processor.close()
        book = recompute(read_range(app, starts, stored_offsets(url, group)))
        with TestClient(create_app(app.settings, database_url=url)) as client:
            yield Projected(client, book, stream, network)


def test_health_and_openapi(projected: Projected) -> None:
    assert projected.client.get("/health").json() == {"status": "ok"}
    spec = projected.client.get("/openapi.json").json()
    paths = {"/balances", "/trial-balance", "/payments/{payment_id}", "/revenue", "/vat",
             "/authorizations/open", "/providers/flows", "/ledger/counts"}  # fmt: skip
    assert paths <= set(spec["paths"])


def test_balances_paginate_to_the_recomputed_book(projected: Projected) -> None:
    items, offset = [], 0
    while offset is not None:
        page = projected.client.get("/balances", params={"limit": 7, "offset": offset}).json()
        assert len(page["items"]) <= 7
        items += page["items"]
        offset = page["next_offset"]
    got = {(r["account"], r["currency"]): (r["debit"], r["credit"]) for r in items}
    assert got == {k: (d, c) for k, (d, c) in projected.book.balances.items()}
    pending = projected.client.get("/balances", params={"view": "pending"}).json()["items"]
    assert pending and all(r["account"].startswith("memo:") for r in pending)


def test_balances_as_of(projected: Projected) -> None:
    later = projected.client.get("/balances", params={"as_of": "2100-01-01T00:00:00Z"}).json()
    got = {(r["account"], r["currency"]): r["balance"] for r in later["items"]}
    assert got == {k: d - c for k, (d, c) in projected.book.balances.items()}
    before = projected.client.get("/balances", params={"as_of": "2000-01-01T00:00:00Z"}).json()
    assert before["items"] == []
    naive = projected.client.get("/balances", params={"as_of": "2026-11-05T00:00:00"})
    assert naive.status_code == 422 and naive.json()["code"] == "VALIDATION_ERROR"


def test_trial_balance_balances_and_matches(projected: Projected) -> None:
    body = projected.client.get("/trial-balance").json()
    assert body["balanced"] is True
    got = {(r["account"], r["currency"]): r["debit_balance"] - r["credit_balance"]
           for r in body["items"]}  # fmt: skip
    expected = {k: n for k, n in projected.book.nets().items() if not k[0].startswith("memo:")}
    assert got == expected


def test_payment_detail_and_unknown_payment(projected: Projected) -> None:
    pid = f"P-{projected.network}-000000"
    body = projected.client.get(f"/payments/{pid}").json()
    state = projected.book.states[pid]
    assert (body["status"], body["captured"], body["refunded"]) == (
        state.status.value, state.captured, state.refunded)  # fmt: skip
    assert sum(line["amount_minor"] for line in body["postings"]) == 0
    missing = projected.client.get("/payments/no-such-payment")
    assert missing.status_code == 404 and missing.json()["code"] == "UNKNOWN_PAYMENT_ID"


def test_bad_parameters_answer_in_the_one_error_shape(projected: Projected) -> None:
    bad = projected.client.get("/balances", params={"limit": "many"})
    assert bad.status_code == 422 and bad.json()["code"] == "INVALID_REQUEST"
    assert "limit" in bad.json()["detail"] and "many" not in bad.json()["detail"]
    assert set(bad.json()) == {"code", "detail", "request_id"}
    nul = projected.client.get("/payments/pay%00ment")
    assert nul.status_code == 400 and nul.json()["code"] == "INVALID_PARAMETER"


def test_revenue_vat_flows_and_open_holds(projected: Projected) -> None:
    nets = projected.book.nets()
    for by in ("station", "day", "dimension"):
        rows = projected.client.get("/revenue", params={"by": by}).json()["items"]
        revenue = -sum(n for (a, _), n in nets.items() if a.startswith("revenue:"))
        refunds = sum(n for (a, _), n in nets.items() if a.startswith("contra_revenue:"))
        assert sum(r["net_revenue"] for r in rows) == revenue - refunds
    vat_rows = projected.client.get("/vat", params={"period": "quarter"}).json()["items"]
    by_country: dict[str, int] = {}
    for r in vat_rows:
        by_country[r["country"]] = by_country.get(r["country"], 0) + r["payable"]
    assert by_country == {a.split(":")[2]: -n for (a, _), n in nets.items()
                          if a.startswith("liabilities:vat_payable:")}  # fmt: skip
    flows = projected.client.get("/providers/flows").json()["items"]
    voided = [s for s in projected.book.states.values() if s.status is PaymentStatus.VOIDED]
    assert sum(f["voids"] for f in flows) == len(voided)
    open_holds = projected.client.get("/authorizations/open", params={"limit": 1000}).json()
    expected = {p for p, s in projected.book.states.items() if s.status.hold_open and s.hold}
    assert {r["payment_id"] for r in open_holds["items"]} == expected
    assert projected.client.get("/revenue", params={"limit": 0}).status_code == 422


def test_counts(projected: Projected) -> None:
    items = projected.client.get("/ledger/counts").json()["items"]
    (row,) = [r for r in items if r["consumer_group"].startswith("test-ledger-")]
    book = projected.book
    assert (row["applied"], row["duplicates"], row["rejected"]) == (
        book.applied, book.duplicates, book.rejected)  # fmt: skip
    assert datetime.fromisoformat(row["updated_at"]) <= datetime.now(UTC)
