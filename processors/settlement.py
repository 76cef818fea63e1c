"""The settlement connector: settlement.commands → provider calls → outcomes on payments.events.

Per instruction (see docs/settlement.md for the crash analysis):

1. the idempotency key is derived from the instruction's event id and the attempt is written to
   ``provider_attempts`` and committed (own connection) **before** any provider call;
2. the provider is called with that key, with bounded ``ledger.settlement.retry`` backoff for
   retriable errors; authorizations are routed by ``ledger.settlement.routing`` and fail over
   only when the provider answered definitely that it did nothing;
3. the answer is committed to the attempt log (succeeded / failed / in_doubt);
4. outcome events with deterministic ids (uuid5 of the instruction's event id and the outcome
   kind) go to the outbox in the batch transaction, with the offsets.

A redelivered instruction finds its attempt row: final → the same events again; pending or in
doubt → the same key again (the provider replays its first answer) or a status query; never a
guess. In-doubt rows are applied without an outcome and re-asked by ``resolve()`` until the
provider gives a definite answer.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from connectors import metrics
from connectors.consumer_lag import LagMonitor
from connectors.personal_data import read_pseudonymizer
from connectors.provider_registry import ProviderRegistry
from connectors.settlement_store import Attempt, AttemptStore, mark_emitted, restore_command
from ledger.pseudonyms import Pseudonymizer
from ledger.settlement.outcomes import outcome_event_id
from ledger.settlement.routing import BreakerState
from processors.base import (
    BatchStats,
    Effects,
    PostgresProcessor,
    Wiring,
    drain_steps,
    until_terminated,
)
from processors.settlement_attempts import outcome_events
from processors.settlement_handler import CommandRefused, ConnectorConfig, SettlementHandler

__all__ = [
    "GROUP",
    "TOPIC",
    "CommandRefused",
    "ConnectorConfig",
    "SettlementConnector",
    "SettlementHandler",
    "build_settlement_processor",
    "outcome_event_id",
    "outcome_events",
]

log = logging.getLogger("evledger.settlement")
GROUP = "evledger-settlement"
TOPIC = "settlement.commands"


class SettlementConnector:
    """The connector process: the base loop over settlement.commands plus the in-doubt resolver."""

    def __init__(
        self,
        app: Wiring,
        providers: ProviderRegistry,
        *,
        group: str = GROUP,
        database_url: str | None = None,
        config: ConnectorConfig | None = None,
        batch_size: int = 200,
    ) -> None:
        self.config = config or ConnectorConfig()
        if self.config.pseudonyms is None:
            self.config = dataclasses.replace(self.config, pseudonyms=_card_key(app))
        url = database_url or app.database_url
        self.store = AttemptStore.connect(url)
        self.handler = SettlementHandler(providers, self.store, self.config)
        self.processor = PostgresProcessor(
            app, self.handler, group, [TOPIC], batch_size=batch_size, database_url=url
        )
        self._last_resolve = 0.0
        self._providers = tuple(providers.providers)
        self._publish_breakers()

    @property
    def group(self) -> str:
        return self.processor.group

    @property
    def topics(self) -> list[str]:
        return self.processor.topics

    def step(self, timeout: float = 0.5) -> BatchStats:
        """One batch (see ``PostgresProcessor.step``), then a resolver pass when one is due."""
        stats = self.processor.step(timeout)
        now = time.monotonic()
        if now - self._last_resolve >= self.config.resolve_every:
            self._last_resolve = now
            stats.published += self.resolve()
        self._publish_breakers()
        return stats

    @property
    def lag(self) -> LagMonitor:
        return self.processor.lag

    def _publish_breakers(self) -> None:
        """The breakers' states as gauges, from this thread (breakers are not thread-safe);
        a provider not called yet is closed."""
        states = {name: BreakerState.CLOSED.value for name in self._providers}
        states.update({name: state.value for name, state in self.handler.breakers.states().items()})
        metrics.breaker_states(states)

    def resolve(self) -> int:
        """Re-ask the provider for every in-doubt (or abandoned pending) attempt, with the same
        key; emit the outcome of those that became definite. Returns events relayed."""
        resolved = 0
        for attempt in self.store.unresolved(self.config.pending_for):
            if self.handler.breakers.breaker(attempt.provider).state is BreakerState.OPEN:
                continue  # the provider is down: ask after its cool-down
            try:
                resolved += self._resolve_one(attempt)
            except Exception:  # one bad row must not stop the connector; it stays unresolved
                log.exception("resolving %s failed", attempt.idempotency_key)
        return self.processor.relay() if resolved else 0

    def _resolve_one(self, attempt: Attempt) -> int:
        command = restore_command(attempt.request)
        if not attempt.status.final:
            self.handler._carry_out(command, attempt, resumed=True)
        done = self.store.get(attempt.idempotency_key)
        if done is None or not done.status.final:
            return 0
        processor = self.processor
        events, refusal = outcome_events(command, done, self.config.pseudonyms)
        with processor.checkpoint.batch() as batch:
            tx = Effects(
                batch,
                processor.publisher.serde.encode,
                processor.group,
                processor.app.settings.network_id,
            )
            for event in events:
                tx.emit(event)
            mark_emitted(tx.conn, done.idempotency_key)
        if refusal is not None:
            log.warning("%s resolved as refused: %s %s", done.idempotency_key, *refusal)
        return 1

    def drain(self, idle_seconds: float = 3.0, max_seconds: float = 600.0) -> BatchStats:
        """Process until nothing new arrives for ``idle_seconds`` (demo, tests)."""
        return drain_steps(self.step, idle_seconds, max_seconds)

    def run_forever(self) -> None:
        """Step until SIGTERM (``until_terminated``: the batch in hand commits first)."""
        with until_terminated() as stopping:
            while not stopping.is_set():
                self.step(1.0)

    def close(self) -> None:
        self.processor.close()
        self.store.close()


def _card_key(app: Wiring) -> Pseudonymizer | None:
    """The deployment's pseudonym key, which card fingerprints are keyed with. A configured or
    present key file that cannot be read stops the connector (MasterKeyError); with none, card
    fingerprints are an unkeyed hash, and the connector says so."""
    settings = getattr(app, "settings", None)
    path = getattr(settings, "pseudonym_key_path", None)
    configured = bool(getattr(settings, "pseudonym_key_file", ""))
    if path is None or not (configured or path.exists()):
        log.warning("no pseudonym key file: card fingerprints are an unkeyed hash of the payment "
                    "token (evledger keys pseudonym-init; docs/security.md)")  # fmt: skip
        return None
    return read_pseudonymizer(path)


def build_settlement_processor(
    app: Wiring,
    providers: ProviderRegistry | None = None,
    *,
    group: str = GROUP,
    database_url: str | None = None,
    config: ConnectorConfig | None = None,
) -> SettlementConnector:
    """The settlement connector for ``app``; providers default to ``load_providers()``
    (the shared sandbox plus whatever the environment configures)."""
    if providers is None:
        from connectors.provider_registry import load_providers

        providers = load_providers()
    return SettlementConnector(
        app, providers, group=group, database_url=database_url, config=config
    )
