"""Alert pipeline state: the `StateStore` contract (store.py), in memory and in Redis."""
