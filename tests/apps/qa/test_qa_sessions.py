"""The in-memory session store (what the app uses without Redis)."""

from __future__ import annotations

import time

from threefold.apps.qa.sessions import MemorySessionStore, Turn


def test_memory_sessions_round_trip_with_turn_cap() -> None:
    store = MemorySessionStore(ttl_s=300, max_turns=2)
    session = store.create()
    for i in range(3):
        session.turns.append(Turn(turn_id=f"t{i}", role="user", text=f"message {i}", ts=float(i)))
    store.save(session)
    again = store.get(session.id)
    assert again is not None and [t.text for t in again.turns] == ["message 1", "message 2"]
    again.turns.clear()
    assert len(store.get(session.id).turns) == 2  # callers get copies
    assert store.get("0" * 32) is None


def test_memory_sessions_expire() -> None:
    store = MemorySessionStore(ttl_s=1)
    session = store.create()
    time.sleep(1.05)
    assert store.get(session.id) is None
