"""threefold.core: the shared AI core (classifiers, embedder, vector index, model registry)."""
