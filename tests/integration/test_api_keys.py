"""The finance API behind API keys: every request needs a valid key with the endpoint's scope,
and a key sees only its own network's books. Two networks share one projected book here; each
key's balances equal the independent recomputation of its network's events alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from connectors import keys_store, postgres
from entrypoints.api import create_app
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from processors.ledger_projector import TOPICS, build_ledger_processor
from tests.integration.conftest import api_key, end_offsets
from tests.integration.test_ledger_projector import (
    publish,
    run_to,
    scratch_book,
    start_group,
    stored_offsets,
)
from tests.ledger_oracle import Book, mixed_stream, read_range, recompute


@dataclass
class Two:
    url: str
    client: TestClient
    networks: tuple[str, str]
    books: dict[str, Book]
    keys: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def two(app: App) -> Iterator[Two]:
    a, b = (f"net-{x}-{uuid.uuid4().hex[:6]}" for x in "ab")
    streams = [mixed_stream(a, payments_count=12, seed=1), mixed_stream(b, payments_count=12,
                                                                       seed=2)]  # fmt: skip
    with scratch_book(app) as url:
        group, starts = start_group(app, url)
        processor = build_ledger_processor(app, group=group, database_url=url, batch_size=50)
        try:
            publish(app, streams[0].phase1 + streams[1].phase1)
            run_to(processor, end_offsets(app, list(TOPICS)))
            publish(app, streams[0].phase2 + streams[1].phase2)
            run_to(processor, end_offsets(app, list(TOPICS)))
        finally:
            processor.close()
        records = read_range(app, starts, stored_offsets(url, group))
        books = {
            n: recompute(
                r for r in records if r.event is not None and r.event.envelope.network_id == n
            )
            for n in (a, b)
        }
        keys = {n: api_key(url, n) for n in (a, b)}
        with TestClient(create_app(app.settings, database_url=url)) as client:
            yield Two(url, client, (a, b), books, keys)


def balances(two: Two, network: str) -> dict[tuple[str, str], tuple[int, int]]:
    answer = two.client.get("/balances", params={"limit": 1000}, headers=two.keys[network])
    assert answer.status_code == 200, answer.text
    assert answer.json()["next_offset"] is None
    return {
        (r["account"], r["currency"]): (r["debit"], r["credit"]) for r in answer.json()["items"]
    }


def test_each_key_sees_exactly_its_networks_books(two: Two) -> None:
    a, b = two.networks
    for network in (a, b):
        expected = {k: (d, c) for k, (d, c) in two.books[network].balances.items()}
        assert balances(two, network) == expected
        trial = two.client.get("/trial-balance", headers=two.keys[network]).json()
        assert trial["balanced"] and trial["items"]
        held = two.client.get("/authorizations/open", headers=two.keys[network]).json()["items"]
        assert {h["network_id"] for h in held} <= {network}
    assert balances(two, a) != balances(two, b)


def test_another_networks_payment_is_not_found(two: Two) -> None:
    a, b = two.networks
    own = two.client.get(f"/payments/P-{a}-000000", headers=two.keys[a])
    other = two.client.get(f"/payments/P-{b}-000000", headers=two.keys[a])
    assert own.status_code == 200 and own.json()["network_id"] == a
    assert other.status_code == 404 and other.json()["code"] == "UNKNOWN_PAYMENT_ID"


@pytest.mark.parametrize(
    "path", ["/balances", "/trial-balance", "/revenue", "/vat", "/providers/flows",
             "/authorizations/open", "/sessions/held", "/ledger/counts", "/payments/P-1"],
)  # fmt: skip
def test_no_key_or_a_bad_key_is_401_on_every_endpoint(two: Two, path: str) -> None:
    unknown = {"X-API-Key": "evl_0123456789ab_" + "A" * 43}  # well formed, not held
    for headers in ({}, {"Authorization": "Bearer nonsense"}, unknown):
        answer = two.client.get(path, headers=headers)
        assert answer.status_code == 401, (path, headers, answer.text)
        assert answer.json()["code"] == "UNAUTHENTICATED"
    assert two.client.get("/health").status_code == 200  # liveness needs no key


def test_scopes_bound_what_a_key_may_read(two: Two) -> None:
    a, _ = two.networks
    publisher = api_key(two.url, a, "publish")
    reader = api_key(two.url, a, "finance:read")
    answer = two.client.get("/balances", headers=publisher)
    assert answer.status_code == 403 and answer.json()["code"] == "FORBIDDEN_SCOPE"
    assert "finance:read" in answer.json()["detail"]
    assert two.client.get("/balances", headers=reader).status_code == 200
    counts = two.client.get("/ledger/counts", headers=reader)
    assert counts.status_code == 403 and "admin" in counts.json()["detail"]
    assert two.client.get("/ledger/counts", headers=two.keys[a]).status_code == 200


def test_keys_are_made_revoked_and_rotated_by_the_cli_and_logged(two: Two) -> None:
    a, _ = two.networks
    env = {"EVLEDGER_DATABASE_URL": two.url, "COLUMNS": "3000"}
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "--network", a, "--scope", "finance:read",
                               "--name", "bi-tool", "--actor", "alice"], env=env)  # fmt: skip
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    key_id = token.split("_")[1]
    headers = {"X-API-Key": token}
    assert two.client.get("/vat", headers=headers).status_code == 200

    rotated = runner.invoke(cli, ["keys", "rotate", key_id, "--actor", "alice"], env=env)
    assert rotated.exit_code == 0, rotated.output
    new_token = next(x for x in rotated.output.splitlines() if x.startswith("evl_"))
    assert two.client.get("/vat", headers=headers).status_code == 401
    assert two.client.get("/vat", headers={"X-API-Key": new_token}).status_code == 200

    new_id = new_token.split("_")[1]
    revoked = runner.invoke(cli, ["keys", "revoke", new_id, "--reason", "left the company",
                                  "--actor", "bob"], env=env)  # fmt: skip
    assert revoked.exit_code == 0, revoked.output
    assert two.client.get("/vat", headers={"X-API-Key": new_token}).status_code == 401

    listed = runner.invoke(cli, ["keys", "list", "--network", a], env=env)
    assert key_id in listed.output and new_id in listed.output and token not in listed.output
    bad = runner.invoke(cli, ["keys", "create", "--network", a, "--scope", "everything"], env=env)
    assert bad.exit_code == 2 and "unknown scope everything" in bad.output

    with postgres.connect(two.url, autocommit=True) as conn:
        log = [(r.actor, r.action, r.key_id) for r in keys_store.audit_log(conn)][:3]
        assert log == [("bob", "key.revoke", new_id), ("alice", "key.rotate", new_id),
                       ("alice", "key.create", key_id)]  # fmt: skip
        stored = conn.execute("SELECT secret_hash FROM api_keys WHERE key_id = %s", (key_id,))
        assert token.split("_", 2)[2].encode() not in bytes(stored.fetchone()[0])  # type: ignore[index]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append only"):
            conn.execute("DELETE FROM admin_audit")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append only"):
            conn.execute("UPDATE admin_audit SET actor = 'mallory'")
