"""Replay of the sessions projection: a simulated network priced live (sessions processor and
settlement with the sandbox provider, side by side as deployed), then the sessions projection
rebuilt from the log into a fresh database, killed halfway and resumed: sessions, meter values,
holds, CDRs and tariff versions equal the live ones row for row, and nothing is published."""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg

from connectors import audit, postgres, sessions_store
from connectors.provider_registry import ProviderRegistry, shared_sandbox
from entrypoints.bootstrap import App
from entrypoints.replay import replay_sessions, replay_settlement
from entrypoints.simulate import ChargingNetworkFlow, past_start
from ledger.events import AuthorizeRequested, SessionStarted
from processors.sessions import TOPICS as SESSIONS_TOPICS
from processors.sessions import build_sessions_processor
from processors.settlement import build_settlement_processor
from processors.settlement_replay import TOPICS as SETTLEMENT_TOPICS
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_projector import scratch_book


def test_the_sessions_projection_rebuilt_from_the_log_equals_the_live_one(app: App) -> None:
    flow = ChargingNetworkFlow(f"net-replay-s-{uuid.uuid4().hex[:8]}", seed=21, stations=8)
    with scratch_book(app) as live, scratch_book(app) as rebuilt:
        sessions_p = build_sessions_processor(app, group=f"test-s-{uuid.uuid4().hex[:8]}",
                                              database_url=live)  # fmt: skip
        settlement_p = build_settlement_processor(
            app, ProviderRegistry.of(shared_sandbox()), database_url=live,
            group=f"test-st-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        starts = end_offsets(app, [*SESSIONS_TOPICS, "settlement.commands"])
        with postgres.connect(live) as conn:
            for processor in (sessions_p, settlement_p.processor):
                postgres.store_offsets(conn, processor.group, {
                    k: v for k, v in starts.items() if k[0] in processor.topics})  # fmt: skip
            for station_id, key in flow.meter_keys().items():
                sessions_store.register_meter_key(conn, station_id, key, "test meter")
            conn.commit()
        publisher = app.publisher()
        publisher.publish_many([*flow.tariffs(), *flow.locations()])
        publisher.flush()
        sessions_p.drain(idle_seconds=1.0)
        # In causal order, as a network sends them: each hold is authorized (and logged) before
        # its session's meter values and stop.
        traffic = list(flow.sessions(40, past_start(40, timedelta(minutes=3))))
        opening = [e for e in traffic if isinstance(e, AuthorizeRequested | SessionStarted)]
        rest = [e for e in traffic if not isinstance(e, AuthorizeRequested | SessionStarted)]
        try:
            for phase in (opening, rest):
                publisher.publish_many(phase)
                publisher.flush()
                for _ in range(5):
                    moved = settlement_p.drain(idle_seconds=1.0).consumed
                    moved += sessions_p.drain(idle_seconds=1.0).consumed
                    if not moved:
                        break
        finally:
            sessions_p.close()
            settlement_p.close()

        ours = {k: v for k, v in starts.items() if k[0] in SESSIONS_TOPICS}
        first = replay_sessions(app, rebuilt, reference_url=live, starts=ours, max_steps=2,
                                batch_size=100)  # fmt: skip
        assert not first.finished  # "killed" after two batches
        second = replay_sessions(app, rebuilt, reference_url=live, batch_size=100)
        assert second.finished

        with psycopg.connect(live) as a, psycopg.connect(rebuilt) as b:
            counts, problems = audit.compare_projections(a, b, projections=("sessions",))
            billed = a.execute("SELECT count(*) FROM session_cdrs").fetchone()
            relayed = b.execute("SELECT count(*) FROM outbox").fetchone()
        assert problems == [], problems[:10]
        assert counts["sessions"] >= 40 and billed is not None and billed[0] >= 30
        assert relayed is not None and relayed[0] > 0  # emitted into the outbox, never published

        # The settlement attempt log, rebuilt from the instructions and their outcomes without
        # calling a provider (killed after one batch and resumed), equals the live one as far
        # as the log holds it.
        with scratch_book(app) as attempts:
            ours = {k: v for k, v in starts.items() if k[0] in SETTLEMENT_TOPICS}
            cut = replay_settlement(app, attempts, starts=ours, max_steps=1, batch_size=50)
            assert not cut.finished
            assert replay_settlement(app, attempts, batch_size=50).finished
            with psycopg.connect(live) as a, psycopg.connect(attempts) as b:
                counts, problems = audit.compare_projections(a, b, projections=("settlement",))
                live_kinds = dict(a.execute(
                    "SELECT action || ' ' || status, count(*) FROM provider_attempts GROUP BY 1"
                ).fetchall())  # fmt: skip
                tries = b.execute("SELECT sum(tries) FROM provider_attempts").fetchone()
        assert problems == [], problems[:10]
        assert live_kinds.get("authorize succeeded", 0) >= 30, live_kinds
        assert live_kinds.get("capture succeeded", 0) >= 20, live_kinds
        assert counts["attempts"] == sum(live_kinds.values())
        assert tries == (0,)  # no provider was called
