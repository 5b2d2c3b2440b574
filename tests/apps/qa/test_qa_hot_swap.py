"""Every worker follows the bot directory's current pointer: edits, rollbacks, broken versions."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from threefold.apps.qa.store import BotStore

pytestmark = pytest.mark.integration


def version_of_reply(client) -> str:
    reply = client.post("/api/chat", json={"message": "Is shipping free?"})
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()["bot_version"]


def test_a_second_worker_follows_edits_and_rollbacks_without_a_restart(
    make_app, admin_headers
) -> None:
    first, second = (make_app(follow_pointer_s=0).test_client() for _ in range(2))
    original = version_of_reply(second)
    edited = first.put(
        "/api/kb/po_box",
        headers=admin_headers,
        json={"questions": ["Can you ship to a PO box?"], "answer": "Yes, standard only."},
    ).get_json()["version"]
    assert edited != original
    assert version_of_reply(second) == edited
    assert second.get("/api/kb/po_box", headers=admin_headers).get_json()["answer"] == (
        "Yes, standard only."
    )
    assert first.post("/api/kb/rollback", headers=admin_headers).get_json()["version"] == original
    assert version_of_reply(second) == original
    assert "qa_bot_swaps_total 2.0" in second.get("/metrics").get_data(as_text=True)


def test_a_version_that_fails_to_load_keeps_the_old_bot_answering(
    make_app, bot_dir: Path, caplog
) -> None:
    client = make_app(follow_pointer_s=0).test_client()
    original = version_of_reply(client)

    def broken(folder: Path, _version: str) -> None:
        (folder / "bot.json").write_text('{"format": "something else"}', encoding="utf-8")

    with caplog.at_level(logging.ERROR):
        BotStore(bot_dir).entry.publish(broken)
        assert version_of_reply(client) == original
    assert "could not load the bot version the pointer names; keeping the old" in caplog.text


def test_the_pointer_is_read_at_most_every_follow_pointer_s(make_app, bot_dir: Path) -> None:
    client = make_app(follow_pointer_s=3600).test_client()
    original = version_of_reply(client)
    store = BotStore(bot_dir)
    manager = client.application.extensions["threefold.qa"].manager
    newer = store.entry.publish_dir(store.version_dir(original))
    assert version_of_reply(client) == original  # not looked yet
    assert manager.follow_pointer(force=True) is True
    assert version_of_reply(client) == newer
