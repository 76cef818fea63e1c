"""Fraud scoring: what the fraud processor observes, its rules as pure functions over a
subject's recent history, how their contributions combine into a score, and each network's
policy (threshold, action, parameters). No Kafka, no database: the processor holds the state."""
