"""The pure retention policy core: no Kafka, no clock reads, no I/O."""
