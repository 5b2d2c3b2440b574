"""Financial-news sentiment alerting over Kafka."""
