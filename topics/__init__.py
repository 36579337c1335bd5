"""Topic declarations: every Kafka topic Lethe reads or writes, in one place."""
