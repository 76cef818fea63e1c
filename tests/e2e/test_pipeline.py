"""The whole flow: upstream events -> sessions -> settlement (sandbox) -> ledger, checked by
invariants that tie the processors together."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from connectors import postgres
from tests.e2e.conftest import E2E_DATABASE, DemoBook


def test_simulated_network_is_priced_settled_and_booked_consistently(demo_book: DemoBook) -> None:
    run, network = demo_book.run, demo_book.network
    assert conninfo_to_dict(run.database_url)["dbname"] == E2E_DATABASE
    ours = f"SELECT payment_id FROM charging_sessions WHERE network_id = '{network}'"
    with postgres.connect(run.database_url) as conn:

        def one(query: str) -> tuple:  # type: ignore[type-arg]
            row = conn.execute(query.encode()).fetchone()
            assert row is not None
            return row

        # Every consumed record is applied, a duplicate or rejected: the counts cover the offsets.
        for group, consumed_query in (
            ("evledger-sessions", "'sessions.events','tariffs.events','payments.events'"),
            ("evledger-settlement", "'settlement.commands'"),
            ("evledger-ledger", "'payments.events','billing.events','provider.events'"),
        ):
            applied, duplicates, rejected = one(
                "SELECT applied, duplicates, rejected FROM processing_counts"
                f" WHERE consumer_group = '{group}'"
            )
            rows = conn.execute(
                "SELECT topic, partition, next_offset FROM consumer_offsets"
                f" WHERE consumer_group = '{group}' AND topic IN ({consumed_query})".encode()
            ).fetchall()
            consumed = sum(o - run.start_offsets[(t, p)] for t, p, o in rows)
            assert applied + duplicates + rejected == consumed, group

        # Every session ended billed or voided; no session is left open or held.
        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM charging_sessions WHERE network_id = %s"
                " GROUP BY status",
                (network,),
            ).fetchall()
        )
        assert sum(statuses.values()) == run.sessions == 60 + 5  # five sessions of attacks
        assert set(statuses) <= {"billed", "voided"}, statuses

        # The books balance per currency, posted and memo alike.
        assert one(
            "SELECT count(*) FROM (SELECT currency, is_memo FROM balances"
            " GROUP BY 1, 2 HAVING sum(balance) <> 0) AS off"
        ) == (0,)

        # Money trail for this run's payments: what the journal put in provider clearing (plus
        # the fees paid from it) equals captured minus refunded; captures never exceed the hold.
        clearing, fees = one(
            "SELECT coalesce(sum(p.amount_minor) FILTER"
            " (WHERE p.account LIKE 'assets:provider_clearing:%'), 0),"
            " coalesce(sum(p.amount_minor) FILTER"
            " (WHERE p.account LIKE 'expenses:provider_fees:%'), 0)"
            " FROM postings p JOIN journal_entries e USING (entry_id)"
            f" WHERE e.payment_id IN ({ours})"
        )
        (net,) = one(
            f"SELECT coalesce(sum(captured - refunded), 0) FROM payments"
            f" WHERE payment_id IN ({ours})"
        )
        assert clearing + fees == net and net > 0
        assert one("SELECT count(*) FROM payments WHERE captured > authorized") == (0,)

        # What the sessions processor asked to capture is what the sandbox captured and booked.
        (requested,) = one(
            "SELECT coalesce(sum(captured_minor), 0) FROM charging_sessions"
            f" WHERE status = 'billed' AND network_id = '{network}'"
        )
        (booked,) = one(
            f"SELECT coalesce(sum(captured), 0) FROM payments WHERE payment_id IN ({ours})"
        )
        (declined,) = one(
            "SELECT count(*) FROM provider_attempts WHERE action = 'authorize'"
            f" AND status = 'failed' AND payment_id IN ({ours})"
        )
        if declined == 0:
            assert booked == requested
        else:  # a declined card leaves its session's capture refused, with a reason
            assert booked < requested
            (refused,) = one(
                "SELECT count(*) FROM rejections WHERE consumer_group = 'evledger-settlement'"
            )
            assert refused >= declined

        # The two malformed records were rejected with their reasons, not lost.
        reasons = {
            r
            for (r,) in conn.execute(
                "SELECT reason_code FROM rejections WHERE consumer_group = 'evledger-sessions'"
            )
        }
        assert {"UNDECODABLE", "UNKNOWN_SCHEMA_ID"} <= reasons


def test_the_groups_offsets_are_mirrored_to_kafka_for_lag_tooling(demo_book: DemoBook) -> None:
    """The processors resume from the offsets stored with their effects in PostgreSQL, and
    tell Kafka the same offsets after each batch, so KEDA's Kafka scaler and
    kafka-consumer-groups.sh see the real lag (deploy/kubernetes/keda.yaml)."""
    run = demo_book.run
    with postgres.connect(run.database_url) as conn:
        rows = conn.execute(
            "SELECT consumer_group, topic, partition, next_offset FROM consumer_offsets"
            " WHERE consumer_group IN ('evledger-sessions', 'evledger-settlement',"
            " 'evledger-ledger')"
        ).fetchall()
    moved: dict[str, dict[tuple[str, int], int]] = {}
    for group, topic, partition, offset in rows:
        if offset > run.start_offsets.get((topic, partition), 0):  # this run read records there
            moved.setdefault(group, {})[(topic, partition)] = offset
    assert set(moved) == {"evledger-sessions", "evledger-settlement", "evledger-ledger"}
    for group, stored in moved.items():
        committed = {k: v for k, v in demo_book.committed[group].items() if k in stored}
        assert committed == stored, group


def test_the_demo_pseudonymizes_tokens_seals_each_drivers_fields_and_erases_one(
    demo_book: DemoBook,
) -> None:
    from ledger import personal, pseudonyms

    with postgres.connect(demo_book.run.database_url) as conn:
        rows = conn.execute(
            "SELECT email, full_name, billing_address FROM driver_profiles WHERE network_id = %s",
            (demo_book.network,),
        ).fetchall()
        erased = conn.execute(
            "SELECT subject_id FROM data_subject_keys WHERE network_id = %s"
            " AND erased_at IS NOT NULL AND wrapped_key IS NULL",
            (demo_book.network,),
        ).fetchall()
        tokens = conn.execute(
            "SELECT DISTINCT subject FROM fraud_alerts WHERE network_id = %s"
            " AND subject LIKE 'token:%%'",
            (demo_book.network,),
        ).fetchall()
    # The simulated upstream publishes at the front door: the attacks' tokens are pseudonyms.
    assert tokens and all(pseudonyms.is_pseudonym(t.removeprefix("token:")) for (t,) in tokens)
    assert len(rows) == 3 and all(personal.is_sealed(v) for row in rows for v in row)
    assert erased == [("drv-0001",)]
    assert "e-mail [erased], name [erased]; trial balance unchanged" in demo_book.output
