"""What the payment's outcome does to a billed session: the sessions processor reads the
outcomes on payments.events that name a CDR and keeps the session's captured and receivable
amounts as the ledger books them (docs/accounting.md, "Receivables").

- CaptureFailed of the CDR: what was to be captured is owed instead (captured down, receivable
  up);
- PaymentCaptured of a CDR with a receivable: a later capture collects it (receivable down,
  captured up);
- ReceivableCollected / ReceivableWrittenOff: the receivable is settled another way (down).
"""

from __future__ import annotations

import dataclasses

from ledger.events import (
    CaptureFailed,
    PaymentCaptured,
    ReceivableCollected,
    ReceivableWrittenOff,
)
from ledger.sessions.session import Session

Outcome = CaptureFailed | PaymentCaptured | ReceivableCollected | ReceivableWrittenOff


def settle(s: Session, outcome: Outcome) -> Session:
    """``s`` after ``outcome`` (an outcome of one of its CDRs); unchanged when it does not
    apply (a capture of a CDR without a receivable was counted when it was requested)."""
    amount = outcome.amount.amount_minor
    if isinstance(outcome, CaptureFailed):
        taken = min(amount, s.captured_minor)
        return dataclasses.replace(
            s,
            captured_minor=s.captured_minor - taken,
            receivable_minor=s.receivable_minor + taken,
        )
    collected = min(amount, s.receivable_minor)
    if collected == 0:
        return s
    if isinstance(outcome, PaymentCaptured):
        return dataclasses.replace(
            s,
            captured_minor=s.captured_minor + collected,
            receivable_minor=s.receivable_minor - collected,
        )
    return dataclasses.replace(s, receivable_minor=s.receivable_minor - collected)
