"""Settlement: provider routing, retries, outcomes of instructions, reconciliation."""
