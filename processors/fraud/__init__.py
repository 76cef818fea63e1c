"""The fraud processor: a faust-streaming app scoring payments, sessions and CDRs with the rules
of ``ledger.fraud`` (docs/fraud.md)."""
