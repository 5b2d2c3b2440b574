"""Customer-service QA bot: FAQ retrieval with FAISS, fallback and human handoff."""
