"""Bot versions on disk, atomic swaps while readers answer, rollback, reload."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.bot_manager import BotManager
from threefold.apps.qa.knowledge_base import entry_from_mapping
from threefold.apps.qa.retrieval import faq_id_of
from threefold.apps.qa.store import BotStore
from threefold.core.errors import ModelError

RENTALS = entry_from_mapping(
    {
        "id": "rentals",
        "questions": ["Do you rent furniture?", "Can I lease a sofa instead of buying it?"],
        "answer": "We do not rent furniture yet.",
    }
)


def test_saved_bot_loads_back_and_answers_the_same(
    store_bot: Bot, tmp_path: Path, embedder, publish_copy
) -> None:
    store = publish_copy(store_bot, tmp_path / "bot")
    loaded = store.load(embedder=embedder)
    assert loaded.version == store.current_version()
    assert loaded.kb.to_json() == store_bot.kb.to_json()
    assert loaded.calibrator.to_dict() == store_bot.calibrator.to_dict()
    for query in ("is shipping free", "can I pay later", "what is the capital of France"):
        a, b = loaded.retrieve(query), store_bot.retrieve(query)
        assert a.ranking.ids == b.ranking.ids
        assert a.confidence == pytest.approx(b.confidence, abs=1e-5)


def test_a_version_saved_before_a_kb_rule_existed_still_loads(
    store_bot: Bot, tmp_path: Path, embedder, publish_copy
) -> None:
    """kb.json is read back as saved: an answer longer than today's limit, written by an
    earlier version, must not stop the bot from loading after an upgrade."""
    store = publish_copy(store_bot, tmp_path / "bot")
    kb_file = store.version_dir(store.current_version()) / "kb.json"
    records = json.loads(kb_file.read_text(encoding="utf-8"))
    records[0]["answer"] = "Long. " * 5_000  # 30,000 characters: over the 20,000 limit
    kb_file.write_text(json.dumps(records), encoding="utf-8")
    loaded = store.load(embedder=embedder)
    assert loaded.kb.to_json()[0]["answer"] == records[0]["answer"]


def test_versions_rollback_and_activate(store_bot: Bot, tmp_path: Path, publish_copy) -> None:
    store = publish_copy(store_bot, tmp_path / "bot")
    first = store.current_version()
    second = publish_copy(store_bot, tmp_path / "bot").current_version()
    assert store.versions() == [first, second]
    assert second.startswith("0002-")
    assert store.rollback() == first
    assert store.current_version() == first
    with pytest.raises(ModelError, match="nothing to roll back to"):
        store.rollback()
    store.activate(second)
    assert store.current_version() == second
    with pytest.raises(ModelError, match="bot version 'nope' does not exist"):
        store.activate("nope")


def test_missing_bot_dir_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no bot in .*`threefold qa build"):
        BotStore(tmp_path / "empty").load()


def test_bot_of_an_unknown_format_says_to_rebuild(bot_dir: Path) -> None:
    store = BotStore(bot_dir)
    meta = store.version_dir(store.current_version()) / "bot.json"
    doc = json.loads(meta.read_text(encoding="utf-8"))
    meta.write_text(json.dumps({**doc, "format_version": 99}), encoding="utf-8")
    with pytest.raises(ModelError, match=r"format version 99; .*rebuild the bot"):
        store.load()


def test_bot_of_format_1_still_loads(bot_dir: Path, embedder) -> None:
    store = BotStore(bot_dir)
    meta = store.version_dir(store.current_version()) / "bot.json"
    doc = json.loads(meta.read_text(encoding="utf-8"))
    reference = {k: v for k, v in doc["info"]["embedder"].items() if k != "weights_id"}
    old = {**doc, "format_version": 1, "info": {**doc["info"], "embedder": reference}}
    meta.write_text(json.dumps(old), encoding="utf-8")
    bot = store.load(embedder=embedder)
    assert bot.embedder is embedder


def test_readers_never_see_a_half_applied_edit(bot_dir: Path, embedder) -> None:
    manager = BotManager(BotStore(bot_dir), embedder=embedder)
    manager.reload()
    stop = threading.Event()
    problems: list[str] = []
    seen: set[bool] = set()
    versions_read: set[str] = set()

    def read() -> None:
        while not stop.is_set():
            bot = manager.bot  # one snapshot per "request"
            try:
                vector_faqs = {faq_id_of(v) for v in bot.index.ids}
                if vector_faqs != set(bot.kb.ids):
                    problems.append(f"index and KB differ in {bot.version}")
                top = bot.retrieve("can I lease a sofa").ranking.top.faq_id
                has_rentals = "rentals" in bot.kb
                seen.add(has_rentals)
                versions_read.add(bot.version)
                if has_rentals != (top == "rentals"):
                    problems.append(f"{bot.version}: top {top} with rentals={has_rentals}")
            except Exception as exc:  # any reader failure is a test failure
                problems.append(repr(exc))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for _ in range(2):
            for change in ({"upserts": [RENTALS]}, {"deletes": ["rentals"]}):
                version, _ = manager.edit(**change)
                deadline = time.monotonic() + 30
                while version not in versions_read:  # let the readers use each version
                    assert time.monotonic() < deadline, f"no reader used {version}"
                    time.sleep(0.01)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert problems == []
    assert seen == {True, False}
    assert len(manager.store.versions()) == 5


def test_rollback_serves_the_previous_version_again(bot_dir: Path, embedder) -> None:
    manager = BotManager(BotStore(bot_dir), embedder=embedder)
    original = manager.reload()
    changed = entry_from_mapping(
        {**manager.bot.kb["gift_wrap"].to_dict(), "answer": "Gift wrapping is now free."}
    )
    version, stats = manager.edit(upserts=[changed])
    assert stats.embedded == 1 and version != original
    assert manager.bot.kb["gift_wrap"].answer == "Gift wrapping is now free."
    assert manager.rollback() == original
    assert manager.bot.version == original
    assert manager.bot.kb["gift_wrap"].answer.startswith("Add gift wrapping for $4.95")
    assert BotStore(bot_dir).current_version() == original


def test_reload_picks_up_a_version_built_elsewhere(
    bot_dir: Path, store_bot: Bot, embedder, publish_copy
) -> None:
    manager = BotManager(BotStore(bot_dir), embedder=embedder)
    first = manager.reload()
    newer = publish_copy(store_bot, bot_dir).current_version()
    assert manager.bot.version == first
    assert manager.reload() == newer
