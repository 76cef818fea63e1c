"""Pricing: OCPI tariffs, session pricing and pre-authorization sizing.

``price_session`` (``price``) is the entry point; ``_plan``, ``_limits`` and ``_sweep`` are its
internals."""

from ledger.pricing.price import InvalidMeteredSession, PricedSession, price_session

__all__ = ["InvalidMeteredSession", "PricedSession", "price_session"]
