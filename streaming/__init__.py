"""threefold.streaming: Kafka plumbing and embedded services shared by the apps."""
