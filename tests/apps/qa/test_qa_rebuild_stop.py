"""Closing stops the bot's background rebuild: it publishes nothing after an edit's version."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.bot_manager import BotManager
from threefold.apps.qa.intent_model import IntentTraining, TrainingStopped, train_intent_head
from threefold.apps.qa.knowledge_base import entry_from_mapping
from threefold.apps.qa.resources import EXTENSION_KEY

REBUILD_THREAD = "qa-intent-retrain"
PET_POLICY = {
    "id": "pet_policy",
    "questions": ["Can I bring my dog into the store?", "Are pets allowed in your shops?"],
    "answer": "Dogs on a leash are welcome in all our stores.",
}


class HeldInTheRebuild:
    """The test encoder, holding the background rebuild's first `encode` until `release`."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        if threading.current_thread().name == REBUILD_THREAD and not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(120), "the test never released the rebuild"
        return self.encoder.encode(texts, **kwargs)


def stopped_events(caplog: pytest.LogCaptureFixture) -> list[dict]:
    fields = [getattr(r, "fields", None) for r in caplog.records]
    return [f for f in fields if isinstance(f, dict) and f.get("event") == "qa_retrain_stopped"]


def test_the_intent_head_asks_whether_to_stop_before_every_step() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    asked = []

    def should_stop() -> bool:
        asked.append(True)
        return len(asked) == 3

    with pytest.raises(TrainingStopped, match="at intent head step 2 of 300") as stopped:
        train_intent_head(vectors, ["a", "b"] * 3, IntentTraining(), should_stop=should_stop)
    assert stopped.value.stage == "at intent head step 2 of 300" and len(asked) == 3


def test_close_stops_a_rebuild_under_way_which_publishes_nothing(
    store_intent_bot: Bot, tmp_path: Path, publish_copy, embedder, caplog
) -> None:
    store = publish_copy(store_intent_bot, tmp_path / "bot")
    encoder = HeldInTheRebuild(embedder)
    manager = BotManager(store, embedder=encoder)
    manager.reload()
    edited, _ = manager.edit(upserts=[entry_from_mapping(PET_POLICY)])
    assert encoder.entered.wait(120), "the edit started no background rebuild"
    caplog.set_level(logging.INFO, logger="threefold.apps.qa.bot_manager")
    assert manager.close(timeout=0.05) is False  # a bounded wait: the rebuild is still encoding
    encoder.release.set()
    assert manager.wait_for_retrain(timeout=120)
    assert manager.close() is True  # again: the thread has ended
    assert store.current_version() == edited and len(store.versions()) == 2
    assert manager.bot.version == edited
    assert stopped_events(caplog) == [
        {"event": "qa_retrain_stopped", "bot_version": edited, "stage": "after embedding the KB"}
    ]
    # a closed manager still takes an edit, but rebuilds nothing behind it
    later, _ = manager.edit(deletes=["pet_policy"])
    assert manager.wait_for_retrain(timeout=0)
    assert store.current_version() == later and len(store.versions()) == 3


@pytest.mark.integration
def test_closing_the_app_stops_its_background_rebuild(
    store_intent_bot: Bot, tmp_path: Path, publish_copy, make_app, embedder, admin_headers, caplog
) -> None:
    """What the demo and a stopping gunicorn worker call (`Resources.close`, real Redis): no
    version appears in the bot directory after it, so the directory can be removed."""
    store = publish_copy(store_intent_bot, tmp_path / "intent-bot")
    encoder = HeldInTheRebuild(embedder)
    app = make_app(bot_dir=str(tmp_path / "intent-bot"), encoder=encoder)
    client = app.test_client()
    put = client.put("/api/kb/pet_policy", json=PET_POLICY, headers=admin_headers)
    assert put.status_code == 200, put.get_json()
    edited = put.get_json()["version"]
    assert encoder.entered.wait(120), "the edit started no background rebuild"
    caplog.set_level(logging.INFO, logger="threefold.apps.qa.bot_manager")
    resources = app.extensions[EXTENSION_KEY]
    closing = threading.Thread(target=resources.close)
    closing.start()
    closing.join(timeout=0.5)  # close asks for the stop; the rebuild is held meanwhile
    encoder.release.set()
    closing.join(timeout=120)
    assert not closing.is_alive()
    assert resources.manager.wait_for_retrain(timeout=120)
    assert store.current_version() == edited and len(store.versions()) == 2
    assert [e["bot_version"] for e in stopped_events(caplog)] == [edited]
