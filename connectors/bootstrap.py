"""The composition root: builds clients from validated settings. Nothing connects at import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.kafka import EventConsumer, EventPublisher
from connectors.local.postgres import LocalPostgres
from connectors.settings import Settings
from schemas.registry import Registry
from schemas.serde import EventSerde


@dataclass
class App:
    settings: Settings
    registry: Registry
    serde: EventSerde
    _publisher: EventPublisher | None = field(default=None, repr=False)

    @property
    def database_url(self) -> str:
        return database_url(self.settings)

    def publisher(self, **config: Any) -> EventPublisher:
        if self._publisher is None or config:
            publisher = EventPublisher(self.settings.bootstrap_servers, self.serde, **config)
            if config:
                return publisher
            self._publisher = publisher
        return self._publisher

    def consumer(self, group_id: str, **config: Any) -> EventConsumer:
        return EventConsumer(self.settings.bootstrap_servers, self.serde, group_id, **config)


def database_url(settings: Settings) -> str:
    """The configured database, or the local stack's (no connection is made)."""
    return settings.database_url or LocalPostgres(settings).url


def bootstrap(settings: Settings | None = None) -> App:
    """Build the app from ``settings`` (default: the environment)."""
    settings = settings or Settings.from_env()
    registry = Registry(settings.registry_url)
    return App(settings, registry, EventSerde(registry))
