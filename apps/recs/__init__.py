"""Text-based recommendation ranker with a Redis cache."""
