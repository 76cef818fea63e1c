"""Event contracts: typed events, their Avro schemas, serde in Confluent wire format, upcasters."""
