"""Real services run as local processes (no Docker engine needed): Kafka, Apicurio, PostgreSQL."""
