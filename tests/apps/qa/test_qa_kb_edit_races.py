"""Admin edits racing each other (real Redis, threads): a check and the write it relies on are
one step, in one worker and across workers sharing the bot directory."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from threefold.apps.qa.resources import EXTENSION_KEY

pytestmark = pytest.mark.integration
RACERS = 4


def race(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls at once (one thread each, released together); their results in order."""
    start = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.mark.parametrize("workers", [1, 2], ids=["one worker", "two workers"])
def test_of_creates_racing_for_one_id_exactly_one_wins(
    make_app, admin_headers, workers: int
) -> None:
    apps = [make_app(follow_pointer_s=0) for _ in range(workers)]

    def create(n: int) -> Callable[[], object]:
        body = {"id": "pickup_hours", "question": "When can I pick up?", "answer": f"Answer {n}."}
        client = apps[n % workers].test_client()
        return lambda: client.post("/api/kb", json=body, headers=admin_headers)

    responses = race([create(n) for n in range(RACERS)])
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

    responses = race([create(n) for n in range(RACERS)])
    assert [r.status_code for r in responses] == [201] * RACERS
    for app in apps:
        listed = app.test_client().get("/api/kb", headers=admin_headers).get_json()
        assert {f"new_{n}" for n in range(RACERS)} <= {e["id"] for e in listed["entries"]}
