"""Admin edits racing each other (real Redis, threads): a check and the write it relies on are
one step, in one worker and across workers sharing the bot directory."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from support.concurrency import at_once

from threefold.apps.qa.resources import EXTENSION_KEY

pytestmark = pytest.mark.integration
RACERS = 4
DECLINED = "my box got eaten by the dog, what now"  # the store bot declines it
PARAPHRASES = [f"The parcel number {n} arrived broken, what now?" for n in range(RACERS)]


@pytest.mark.parametrize("workers", [1, 2], ids=["one worker", "two workers"])
def test_of_creates_racing_for_one_id_exactly_one_wins(
    make_app, admin_headers, workers: int
) -> None:
    apps = [make_app(follow_pointer_s=0) for _ in range(workers)]

    def create(n: int) -> Callable[[], object]:
        body = {"id": "pickup_hours", "question": "When can I pick up?", "answer": f"Answer {n}."}
        client = apps[n % workers].test_client()
        return lambda: client.post("/api/kb", json=body, headers=admin_headers)

    responses = at_once([create(n) for n in range(RACERS)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (RACERS - 1), [r.get_json() for r in responses]
    winner = next(n for n, r in enumerate(responses) if r.status_code == 201)
    for app in apps:
        kb = app.extensions[EXTENSION_KEY].manager.bot.kb
        assert kb["pickup_hours"].answer == f"Answer {winner}."


def test_creates_on_two_workers_at_once_keep_both_faqs(make_app, admin_headers) -> None:
    """Each worker edits the newest version, not the one it served last: no edit is lost."""
    apps = [make_app(follow_pointer_s=0), make_app(follow_pointer_s=0)]

    def create(n: int) -> Callable[[], object]:
        body = {"id": f"new_{n}", "question": f"Question number {n}?", "answer": f"Answer {n}."}
        client = apps[n % 2].test_client()
        return lambda: client.post("/api/kb", json=body, headers=admin_headers)

    responses = at_once([create(n) for n in range(RACERS)])
    assert [r.status_code for r in responses] == [201] * RACERS
    for app in apps:
        listed = app.test_client().get("/api/kb", headers=admin_headers).get_json()
        assert {f"new_{n}" for n in range(RACERS)} <= {e["id"] for e in listed["entries"]}


@pytest.mark.parametrize("workers", [1, 2], ids=["one worker", "two workers"])
def test_paraphrases_added_to_one_faq_at_once_are_all_kept(
    make_app, admin_headers, workers: int
) -> None:
    """Each review paraphrase extends the newest version of the FAQ, not the one it served."""
    apps = [make_app(follow_pointer_s=0) for _ in range(workers)]
    client = apps[0].test_client()
    assert client.post("/api/chat", json={"message": DECLINED}).status_code == 200
    listing = client.get("/api/review", headers=admin_headers).get_json()
    items = next(g for g in listing["groups"] if DECLINED in g["questions"])["item_ids"]

    def paraphrase(n: int) -> Callable[[], object]:
        body = {"items": items, "faq_id": "damaged_item", "questions": [PARAPHRASES[n]]}
        racer = apps[n % workers].test_client()
        return lambda: racer.post("/api/review/paraphrase", json=body, headers=admin_headers)

    responses = at_once([paraphrase(n) for n in range(RACERS)])
    assert [r.status_code for r in responses] == [200] * RACERS, [r.get_json() for r in responses]
    assert [r.get_json()["added"] for r in responses] == [[q] for q in PARAPHRASES]
    for app in apps:
        entry = app.test_client().get("/api/kb/damaged_item", headers=admin_headers).get_json()
        assert set(PARAPHRASES) <= set(entry["questions"]), entry["questions"]


@pytest.mark.parametrize("swap", ["rollback", "reload"])
def test_a_rollback_or_reload_waits_for_an_edit_under_way(make_app, admin_headers, swap) -> None:
    """Rollback and reload take the edit lock: an edit reading the newest version and
    publishing its own is one step they cannot land in the middle of."""
    app = make_app(follow_pointer_s=0)
    body = {"id": "pickup_hours", "question": "When can I pick up?", "answer": "From 9."}
    assert app.test_client().post("/api/kb", json=body, headers=admin_headers).status_code == 201
    manager = app.extensions[EXTENSION_KEY].manager  # two versions: one to roll back to
    done = threading.Event()
    thread = threading.Thread(target=lambda: (getattr(manager, swap)(), done.set()))
    with manager.store.edit_lock():  # as an edit in another worker holds it
        thread.start()
        assert not done.wait(timeout=1.0), f"{swap} ran inside another's edit"
    thread.join(timeout=60)
    assert done.is_set()


def test_a_bot_in_a_folder_nobody_may_write_still_serves(
    make_app, store_intent_bot, publish_copy, tmp_path, monkeypatch
) -> None:
    """A bot baked into a read-only image: the start's reload takes the edit lock read-only
    (or goes without it), instead of failing to create DIR/.edit.lock. (As root, file modes
    cannot refuse a write, so the refusal is simulated at os.open.)"""
    import os

    from threefold.apps.qa.store import EDIT_LOCK_FILE

    root = tmp_path / "read-only-bot"
    publish_copy(store_intent_bot, root)
    real_open = os.open

    def read_only_open(path, flags, *args):
        if str(path).endswith(EDIT_LOCK_FILE) and flags & (os.O_RDWR | os.O_WRONLY | os.O_CREAT):
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only_open)
    client = make_app(bot_dir=str(root)).test_client()
    answered = client.post("/api/chat", json={"message": "how long does shipping take?"})
    assert answered.status_code == 200 and answered.get_json()["outcome"] == "answer"


def test_an_edit_on_a_version_that_cannot_be_loaded_is_refused_not_built_on_the_old(
    make_app, admin_headers
) -> None:
    """Worker B cannot load the version worker A published (damaged on disk): B's edit would
    be built on the older version and discard A's. It is a 409 that says so instead."""
    first, second = make_app(follow_pointer_s=0), make_app(follow_pointer_s=0)
    body = {"id": "new_a", "question": "Question from worker A?", "answer": "Answer A."}
    assert first.test_client().post("/api/kb", json=body, headers=admin_headers).status_code == 201
    store = first.extensions[EXTENSION_KEY].manager.store
    published = store.current_version()
    (store.version_dir(published) / "kb.json").unlink()  # damaged: it no longer loads
    body = {"id": "new_b", "question": "Question from worker B?", "answer": "Answer B."}
    refused = second.test_client().post("/api/kb", json=body, headers=admin_headers)
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["error"] == "stale_bot" and published in refused.get_json()["message"]
    assert store.current_version() == published  # nothing published over it
