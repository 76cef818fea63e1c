"""``make chaos SEED=n``: the whole flow under seeded faults, judged by an independent checker."""
