"""Suite-wide test setup: offline Hugging Face, shared fixtures from tests/support/."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models on a small CPU: one intra-op thread is faster and leaves cores to the services.
os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = [
    "support.services",
    "support.models",
    "support.browser",
    "support.webhooks",
    "support.tls",
]
