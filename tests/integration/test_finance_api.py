"""The finance API and the finance CSVs over a projected book, checked against the independent
recomputation: one error shape (in the OpenAPI too), a response model per endpoint, paging that
ends and covers every list, CSV columns named with their unit and a header on an empty result."""

from __future__ import annotations

import csv
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from entrypoints.api import create_app
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from ledger.payments.state import PaymentStatus
from processors.ledger_projector import PAYMENT_EVENTS, TOPICS, build_ledger_processor
from tests.integration.conftest import api_key, end_offsets
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
    url: str
    known_after_phase1: datetime
    """The database's clock between the two phases' projections."""
    phase1_book: Book
    """The recomputation of what phase 1 alone booked."""
    records: list[Any]
    """Every record the projector consumed, in order."""


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
            phase1_book = recompute(read_range(app, starts, stored_offsets(url, group)))
            with psycopg.connect(url) as conn:
                known = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
            publish(app, stream.phase2)
            run_to(processor, end_offsets(app, list(TOPICS)))
        finally:
            processor.close()
        records = list(read_range(app, starts, stored_offsets(url, group)))
        book = recompute(records)
        headers = api_key(url, network)
        with TestClient(create_app(app.settings, database_url=url), headers=headers) as client:
            yield Projected(client, book, stream, network, url, known, phase1_book, records)


LISTS = ["/balances", "/trial-balance", "/authorizations/open", "/revenue", "/providers/flows",
         "/vat", "/ledger/counts", "/sessions/held"]  # fmt: skip
"""Every endpoint that answers a list that can grow."""


def every_item(client: TestClient, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """All items of a list, read ``limit`` at a time by following ``next_offset``."""
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get(path, params={**params, "limit": limit, "offset": offset})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= limit and body["offset"] == offset
        assert body["next_offset"] is None or len(body["items"]) == limit
        items += body["items"]
        offset = body["next_offset"]
    return items


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


def test_balances_as_known_at_a_processing_time(projected: Projected) -> None:
    """What the books said between the two phases: phase 2's entries, booked later, are left
    out whatever their business time."""
    at = projected.known_after_phase1.isoformat()
    then = every_item(projected.client, "/balances", 50, known_at=at)
    got = {(r["account"], r["currency"]): (r["debit"], r["credit"]) for r in then}
    assert got == {k: (d, c) for k, (d, c) in projected.phase1_book.balances.items()}
    now = {k: (d, c) for k, (d, c) in projected.book.balances.items()}
    assert got != now  # phase 2 changed the books since
    both = every_item(projected.client, "/balances", 50, known_at=at, as_of="2100-01-01T00:00:00Z")
    assert {(r["account"], r["currency"]): (r["debit"], r["credit"]) for r in both} == got
    naive = projected.client.get("/balances", params={"known_at": "2026-11-05T00:00:00"})
    assert naive.status_code == 422 and "known_at" in naive.json()["detail"]


def test_trial_balance_balances_and_matches(projected: Projected) -> None:
    # The trial balance pages now, so it is read page by page (it was one unpaged answer).
    items = every_item(projected.client, "/trial-balance", 10)
    got = {(r["account"], r["currency"]): r["debit_balance"] - r["credit_balance"]
           for r in items}  # fmt: skip
    expected = {k: n for k, n in projected.book.nets().items() if not k[0].startswith("memo:")}
    assert got == expected
    # The totals and the verdict cover the whole trial balance, whichever page is asked for.
    one = projected.client.get("/trial-balance", params={"limit": 1}).json()
    assert one["balanced"] is True and len(one["items"]) == 1 and one["next_offset"] == 1
    debits = sum(r["debit_balance"] for r in items)
    assert one["totals"] == {"EUR": {"debit": debits, "credit": debits}}


def test_payment_detail_and_unknown_payment(projected: Projected) -> None:
    pid = f"P-{projected.network}-000000"
    body = projected.client.get(f"/payments/{pid}").json()
    state = projected.book.states[pid]
    assert (body["status"], body["captured"], body["refunded"]) == (
        state.status.value, state.captured, state.refunded)  # fmt: skip
    assert sum(line["amount_minor"] for line in body["postings"]) == 0
    missing = projected.client.get("/payments/no-such-payment")
    assert missing.status_code == 404 and missing.json()["code"] == "UNKNOWN_PAYMENT_ID"


def _totals(state: Any) -> tuple[str, int, int, int, int]:
    return (state.status.value, state.authorized_total, state.captured, state.refunded, state.hold)


def _shown(body: dict[str, Any]) -> tuple[str, int, int, int, int]:
    return (body["status"], body["authorized"], body["captured"], body["refunded"], body["hold"])


def test_payments_as_known_at_a_processing_time(projected: Projected) -> None:
    """Between the two phases each payment read as phase 1 alone left it; before the
    projection none was known."""
    at = projected.known_after_phase1.isoformat()
    assert projected.phase1_book.states
    changed = 0
    for pid, state in projected.book.states.items():
        then = projected.client.get(f"/payments/{pid}", params={"known_at": at})
        before = projected.phase1_book.states.get(pid)
        if before is None:
            assert then.status_code == 404 and then.json()["code"] == "UNKNOWN_PAYMENT_ID"
            continue
        body = then.json()
        assert _shown(body) == _totals(before), pid
        assert body["state"] is None  # the state document is today's only
        assert sum(line["amount_minor"] for line in body["postings"]) == 0
        now = projected.client.get(f"/payments/{pid}").json()
        assert _shown(now) == _totals(state)
        changed += _totals(before) != _totals(state)
    assert changed  # phase 2 moved some payments on
    early = projected.client.get(f"/payments/{pid}", params={"known_at": "2000-01-01T00:00:00Z"})
    assert early.status_code == 404 and "as known at 2000-01-01" in early.json()["detail"]
    naive = projected.client.get(f"/payments/{pid}", params={"known_at": "2026-11-05T00:00:00"})
    assert naive.status_code == 422 and "known_at" in naive.json()["detail"]


def test_payments_as_of_a_business_time(projected: Projected) -> None:
    """As of a business time, a payment is what it was after the last event dated by then, of
    those the ledger applied to it, in the order it applied them (recomputed independently by
    feeding the records one at a time). A counterfactual refold of only the events dated by
    then would differ: a capture re-driven after its payment expired stays refused."""
    book, steps = Book(), defaultdict(list)
    for r in sorted(projected.records, key=lambda r: r.topic == "provider.events"):
        applied = book.applied
        book.feed(r)
        if book.applied > applied and isinstance(r.event, PAYMENT_EVENTS):
            pid = book._payment_of(r.event)
            steps[pid].append((r.event.envelope.occurred_at, _totals(book.states[pid])))
    times = sorted(at for history in steps.values() for at, _ in history)
    for cut in (times[len(times) * k // 6] for k in range(6)):
        for pid, history in steps.items():
            then = projected.client.get(f"/payments/{pid}", params={"as_of": cut.isoformat()})
            dated = [totals for at, totals in history if at <= cut]
            if not dated:
                assert then.status_code == 404, (pid, cut)
                continue
            assert then.status_code == 200 and _shown(then.json()) == dated[-1], (pid, cut)
            assert all(
                datetime.fromisoformat(line["occurred_at"]) <= cut
                for line in then.json()["postings"]
            )


def test_payments_show_at_a_point_in_time_in_the_cli(projected: Projected) -> None:
    pid = next(iter(projected.phase1_book.states))
    at = projected.known_after_phase1.isoformat()
    result = CliRunner().invoke(cli, ["payments", "show", pid, "--known-at", at],
                                env={"EVLEDGER_DATABASE_URL": projected.url})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "as known at" in result.output and pid in result.output


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


@pytest.mark.parametrize("path", LISTS)
def test_every_list_pages_and_its_pages_add_up_to_the_whole(
    projected: Projected, path: str
) -> None:
    whole = projected.client.get(path, params={"limit": 10_000}).json()
    assert whole["next_offset"] is None
    assert every_item(projected.client, path, 2) == whole["items"]


@pytest.mark.parametrize("path", ["/balances", "/trial-balance", "/revenue", "/vat"])
def test_a_full_last_page_has_no_next_offset(projected: Projected, path: str) -> None:
    rows = len(projected.client.get(path, params={"limit": 10_000}).json()["items"])
    assert rows >= 2  # a book with something to page through
    exact = projected.client.get(path, params={"limit": rows}).json()
    assert len(exact["items"]) == rows and exact["next_offset"] is None
    last = projected.client.get(path, params={"limit": 1, "offset": rows - 1}).json()
    assert len(last["items"]) == 1 and last["next_offset"] is None
    short = projected.client.get(path, params={"limit": rows - 1}).json()
    assert short["next_offset"] == rows - 1


def test_the_openapi_documents_a_model_for_every_answer_and_the_one_error_shape(
    projected: Projected,
) -> None:
    spec = projected.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 shape, which is never sent
    assert set(schemas["ErrorBody"]["properties"]) == {"code", "detail", "request_id"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            ok = responses["200"]["content"]["application/json"]["schema"]
            assert "$ref" in ok, (method, path, ok)  # a named model, not a bare object
            for status in ("400", "404", "422", "500", "503"):
                error = responses[status]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
    # What a 422 actually answers has exactly the documented fields.
    bad = projected.client.get("/vat", params={"period": "fortnight"})
    assert bad.status_code == 422 and set(bad.json()) == set(schemas["ErrorBody"]["properties"])


def test_amounts_are_documented_as_minor_units(projected: Projected) -> None:
    schemas = projected.client.get("/openapi.json").json()["components"]["schemas"]
    for model, field in (("Balance", "debit"), ("Vat", "payable"), ("Revenue", "net_revenue")):
        assert "minor units" in schemas[model]["properties"][field]["description"]


def csv_of(projected: Projected, tmp_path: Path, *args: str) -> list[list[str]]:
    """``evledger ARGS --csv FILE`` against the projected book: the file's rows, header first."""
    out = tmp_path / "out.csv"
    env = {"EVLEDGER_DATABASE_URL": projected.url}
    result = CliRunner().invoke(cli, [*args, "--csv", str(out)], env=env)
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize(
    ("args", "header"),
    [
        (["revenue", "--by", "station"],
         ["station", "currency", "revenue_minor", "refunds_minor", "net_revenue_minor"]),
        (["revenue", "--by", "day"],
         ["day", "currency", "revenue_minor", "refunds_minor", "net_revenue_minor"]),
        (["revenue", "--by", "dimension"],
         ["dimension", "currency", "revenue_minor", "refunds_minor", "net_revenue_minor"]),
        (["trial-balance"],
         ["account", "currency", "debit_balance_minor", "credit_balance_minor"]),
        (["balances"], ["account", "currency", "debit_minor", "credit_minor", "balance_minor"]),
        (["revenue", "--by", "country"],
         ["country", "currency", "revenue_minor", "refunds_minor", "net_revenue_minor"]),
        (["revenue", "--by", "country_rate"],
         ["country_rate", "currency", "revenue_minor", "refunds_minor", "net_revenue_minor"]),
        (["vat"], ["country", "vat_rate", "period", "currency", "taxable_base_minor",
                   "collected_minor", "reversed_minor", "payable_minor"]),
        (["provider-flows"], ["provider", "currency", "captures", "captured_minor", "refunds",
                              "refunded_minor", "voids", "voided_minor", "capture_fees_minor"]),
        (["open-authorizations"], ["payment_id", "network_id", "provider", "currency",
                                   "authorized_minor", "captured_minor", "hold_minor",
                                   "station_id", "created_at", "age_seconds"]),
    ],
)  # fmt: skip
def test_csv_columns_are_named_with_their_unit(
    projected: Projected, tmp_path: Path, args: list[str], header: list[str]
) -> None:
    rows = csv_of(projected, tmp_path, *args)
    assert rows[0] == header
    assert len(rows) > 1 and all(len(r) == len(header) for r in rows)


def test_revenue_csv_sums_to_the_api(projected: Projected, tmp_path: Path) -> None:
    rows = csv_of(projected, tmp_path, "revenue", "--by", "station")
    api = every_item(projected.client, "/revenue", 1000, by="station")
    net = rows[0].index("net_revenue_minor")
    assert sum(int(r[net]) for r in rows[1:]) == sum(r["net_revenue"] for r in api)
    assert [r[0] for r in rows[1:]] == [r["key"] for r in api]


def test_an_empty_csv_still_has_its_header(projected: Projected, tmp_path: Path) -> None:
    rows = csv_of(projected, tmp_path, "balances", "--as-of", "2000-01-01")
    assert rows == [["account", "currency", "debit_minor", "credit_minor", "balance_minor"]]
    rows = csv_of(projected, tmp_path, "revenue", "--by", "day", "--until", "2000-01-01")
    assert rows == [["day", "currency", "revenue_minor", "refunds_minor", "net_revenue_minor"]]
