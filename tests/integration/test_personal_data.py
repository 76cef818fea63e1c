"""Personal data on the real stack: sealed in the Kafka record and in the table, opened only
through the vault; a plain value refused by the SDK, by the consumer and sealed by HTTP ingest;
master key rotation while another process keeps reading; erasure after which the log still
replays, the fields read as erased and the trial balance is unchanged."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors import drivers_store, finance, personal_data, postgres
from connectors.personal_data import KeyFile, Keyring, Vault, seal_event
from entrypoints.bootstrap import App
from entrypoints.ingest_app import create_ingest_app
from entrypoints.replay import replay_ledger
from ledger import personal
from ledger.envelope import Envelope, uuid7
from ledger.events import DriverProfileUpdated
from ledger.validation import PersonalDataNotSealed
from processors.drivers import TOPICS, build_drivers_projector
from processors.ledger_projector import TOPICS as LEDGER_TOPICS
from tests.integration.conftest import api_key, consume_from, end_offsets
from tests.integration.test_ledger_projector import publish, scratch_book
from tests.ledger_oracle import mixed_stream

NETWORK = f"net-pd-{uuid.uuid4().hex[:8]}"
EMAIL, NAME, ADDRESS = "anna.muster@example.org", "Anna Muster", "Hauptstr. 1\n10115 Berlin"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "master.keys"
    personal_data.write_keyring(path, Keyring((personal_data.new_master_key(),)))
    return path


@pytest.fixture
def book(app: App) -> Iterator[str]:
    with scratch_book(app) as url:
        yield url


def profile_event(subject: str, **fields: str) -> DriverProfileUpdated:
    values = {"email": EMAIL, "full_name": NAME, "billing_address": ADDRESS, **fields}
    return DriverProfileUpdated(Envelope.new(NETWORK), subject, token_uids=["TOK-1"], **values)


def project(app: App, url: str, group: str, starts: dict[tuple[str, int], int]) -> None:
    with psycopg.connect(url) as conn:
        postgres.store_offsets(conn, group, starts)
    projector = build_drivers_projector(app, group=group, database_url=url)
    try:
        projector.drain(idle_seconds=1.0)
    finally:
        projector.close()


def test_sealed_on_kafka_and_in_the_table_opened_only_through_the_vault(
    app: App, book: str, key_file: Path
) -> None:
    vault = Vault(KeyFile(key_file))
    starts = end_offsets(app, list(TOPICS))
    with postgres.connect(book, autocommit=True) as conn:
        event = seal_event(conn, vault, profile_event("drv-a"))
        again = seal_event(conn, vault, dataclasses.replace(event, email=EMAIL))
    assert all(personal.is_sealed(v) for v in (event.email, event.full_name, event.billing_address))
    assert again.email == event.email  # a retry seals to the same bytes: a duplicate, no conflict
    publish(app, [event])
    (record,) = consume_from(app, list(TOPICS), starts, 1)
    assert record.event == event
    raw = record.value or b""
    for plain in (EMAIL, NAME, "Hauptstr", "Muster"):
        assert plain.encode() not in raw

    project(app, book, f"test-drivers-{uuid.uuid4().hex[:8]}", starts)
    with psycopg.connect(book) as conn:
        row = conn.execute("SELECT email, full_name, billing_address FROM driver_profiles"
                           " WHERE subject_id = 'drv-a'").fetchone()  # fmt: skip
        assert row == (event.email, event.full_name, event.billing_address)
        assert not any(p in str(row) for p in (EMAIL, NAME, "Hauptstr"))
        shown = drivers_store.profile(conn, vault, NETWORK, "drv-a")
        assert (shown.email, shown.full_name, shown.billing_address) == (EMAIL, NAME, ADDRESS)
        # A sealed value moved to another field (or subject) does not open.
        with pytest.raises(personal_data.SealBroken):
            vault.open(conn, NETWORK, "drv-a", "full_name", event.email or "")


def test_a_plain_personal_field_is_refused_by_the_sdk_and_rejected_by_the_consumer(
    app: App, book: str
) -> None:
    plain = profile_event("drv-plain")
    with pytest.raises(PersonalDataNotSealed) as refused:
        app.publisher().publish(plain)
    assert refused.value.code == "PERSONAL_DATA_NOT_SEALED" and EMAIL not in str(refused.value)

    # A raw producer bypasses the SDK: the consumer rejects the record with the reason.
    starts = end_offsets(app, list(TOPICS))
    publisher = app.publisher()
    publisher.produce_bytes("drivers.events", publisher.serde.encode("drivers.events", plain),
                            b"drv-plain")  # fmt: skip
    publisher.flush()
    group = f"test-drivers-{uuid.uuid4().hex[:8]}"
    project(app, book, group, starts)
    with psycopg.connect(book) as conn:
        assert conn.execute("SELECT count(*) FROM driver_profiles WHERE subject_id = 'drv-plain'"
                            ).fetchone() == (0,)  # fmt: skip
        reasons = conn.execute(
            "SELECT reason_code, detail FROM rejections WHERE consumer_group = %s", (group,)
        ).fetchall()
    assert [r[0] for r in reasons] == ["PERSONAL_DATA_NOT_SEALED"]
    assert EMAIL not in reasons[0][1] and "not shown" in reasons[0][1]


def test_ingest_seals_plain_fields_and_a_retry_is_a_duplicate(
    app: App, book: str, key_file: Path
) -> None:
    settings = dataclasses.replace(app.settings, master_key_file=str(key_file))
    headers = api_key(book, NETWORK, "publish")

    def document(full_name: str) -> dict[str, Any]:
        envelope = {"event_id": uuid7(), "occurred_at": "2026-11-20T18:00:00Z",
                    "recorded_at": "2026-11-20T18:00:01Z", "source": "ocpi",
                    "network_id": NETWORK}  # fmt: skip
        return {"type": "DriverProfileUpdated", "event": {
            "envelope": envelope, "subject_id": "drv-ingest", "email": EMAIL,
            "full_name": full_name, "token_uids": ["TOK-9"]}}  # fmt: skip

    doc, card = document(NAME), document("4111-1111-1111-1111")
    starts = end_offsets(app, list(TOPICS))
    with TestClient(create_ingest_app(app, book, settings=settings), headers=headers) as client:
        first = client.post("/v1/events/batch", json={"events": [doc, card]}).json()
        second = client.post("/v1/events", json=doc).json()
    assert [r["status"] for r in first["results"]] == ["accepted", "rejected"]
    assert first["results"][1]["code"] == "CARD_NUMBER"
    assert first["results"][1]["path"] == "$.event.full_name"
    assert "4111" not in str(first)
    assert second["status"] == "duplicate"
    (record,) = consume_from(app, list(TOPICS), starts, 1)
    assert personal.is_sealed(record.event.email) and EMAIL.encode() not in (record.value or b"")
    with postgres.connect(book, autocommit=True) as conn:
        vault = Vault(KeyFile(key_file))
        assert vault.open(conn, NETWORK, "drv-ingest", "email", record.event.email) == EMAIL


def test_rotation_keeps_every_value_readable_for_a_process_that_loaded_the_old_key(
    book: str, key_file: Path
) -> None:
    reader = Vault(KeyFile(key_file))  # another process: loads the key file before the rotation
    sealed: dict[str, str] = {}
    with postgres.connect(book, autocommit=True) as conn:
        for n in range(25):
            sealed[f"drv-{n}"] = reader.seal(conn, NETWORK, f"drv-{n}", "email", f"{n}@x.org", "e")
        assert reader.open(conn, NETWORK, "drv-0", "email", sealed["drv-0"]) == "0@x.org"
    old_id = personal_data.read_keyring(key_file).current[0]
    seen: list[tuple[int, int]] = []
    rotated = Vault(KeyFile(key_file)).rotate(
        lambda: postgres.connect(book, autocommit=True), "tests", batch=10,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert rotated.rewrapped == 25 and seen[-1] == (25, 25) and len(seen) == 3
    assert rotated.retired == (old_id,)
    assert [i for i, _ in personal_data.read_keyring(key_file).keys] == [rotated.new_key_id]
    with postgres.connect(book, autocommit=True) as conn:
        for subject, value in sealed.items():
            assert reader.open(conn, NETWORK, subject, "email", value) == f"{subject[4:]}@x.org"
        masters = conn.execute("SELECT DISTINCT master_key_id FROM data_subject_keys"
                               " WHERE network_id = %s", (NETWORK,)).fetchall()  # fmt: skip
    assert masters == [(rotated.new_key_id,)]
    key_file.chmod(0o644)
    with pytest.raises(personal_data.MasterKeyError, match="chmod 600"):
        personal_data.read_keyring(key_file)


def test_an_erased_subject_replays_as_erased_and_the_books_do_not_move(
    app: App, key_file: Path
) -> None:
    vault = Vault(KeyFile(key_file))
    stream = mixed_stream(NETWORK, payments_count=12, seed=5)
    topics = [*LEDGER_TOPICS, *TOPICS]
    with scratch_book(app) as live, scratch_book(app) as rebuilt:
        starts = end_offsets(app, topics)
        with postgres.connect(live, autocommit=True) as conn:
            event = seal_event(conn, vault, profile_event("drv-erase"))
        publish(app, [*stream.phase1, *stream.phase2, event])

        def rebuild(url: str) -> dict[str, tuple[int, int]]:
            # In log order across topics (the replay's merge), so both books see one order.
            ledger_starts = {k: v for k, v in starts.items() if k[0] in LEDGER_TOPICS}
            assert replay_ledger(app, url, starts=ledger_starts).finished
            project(app, url, f"test-pd-drivers-{uuid.uuid4().hex[:8]}",
                    {k: v for k, v in starts.items() if k[0] in TOPICS})  # fmt: skip
            with psycopg.connect(url) as conn:
                return finance.trial_balance_totals(conn, network=NETWORK)

        before = rebuild(live)
        with postgres.connect(live, autocommit=True) as conn:
            assert drivers_store.profile(conn, vault, NETWORK, "drv-erase").email == EMAIL
            assert vault.erase(conn, NETWORK, "drv-erase", "tests", "erasure request 42")
            assert not vault.erase(conn, NETWORK, "drv-erase", "tests", "again")
            erased = drivers_store.profile(conn, vault, NETWORK, "drv-erase")
            with pytest.raises(personal_data.SubjectErased):
                seal_event(conn, vault, profile_event("drv-erase"))
            wrapped = conn.execute("SELECT wrapped_key FROM data_subject_keys WHERE"
                                   " subject_id = 'drv-erase'").fetchone()  # fmt: skip
            # The rebuilt database reads its keys from the live one's vault table.
            keys = conn.execute("SELECT network_id, subject_id, wrapped_key, master_key_id,"
                                " erased_at FROM data_subject_keys").fetchall()  # fmt: skip
        assert wrapped == (None,)
        assert (erased.email, erased.full_name, erased.billing_address) == (personal.ERASED,) * 3
        assert erased.token_uids == ("TOK-1",)

        with postgres.connect(rebuilt, autocommit=True) as conn:
            for row in keys:
                conn.execute(
                    "INSERT INTO data_subject_keys (network_id, subject_id, wrapped_key,"
                    " master_key_id, erased_at) VALUES (%s, %s, %s, %s, %s)",
                    row,
                )
        after = rebuild(rebuilt)
        assert after == before and before and all(d == c for d, c in before.values())
        with postgres.connect(rebuilt, autocommit=True) as conn:
            replayed = drivers_store.profile(conn, vault, NETWORK, "drv-erase")
        assert replayed.email == personal.ERASED and replayed.token_uids == ("TOK-1",)
