"""Payments: the rules a money event must pass against its payment, the state they fold.

``apply(state, event)`` is the entry point (``rules``); the state it folds is in ``state``,
the reasons it refuses with in ``errors``."""

from ledger.payments.rules import Applied, PaymentEvent, apply, check_hold
from ledger.payments.state import PaymentState, PaymentStatus

__all__ = ["Applied", "PaymentEvent", "PaymentState", "PaymentStatus", "apply", "check_hold"]
