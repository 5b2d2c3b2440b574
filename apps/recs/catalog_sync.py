"""Catalog changes shared between workers through the Redis change log.

A worker applies an admin edit itself, publishes it, and replays what other workers published
(at most every `interval_seconds`). An edit Redis does not take (an outage) waits in this worker
and is published, in order, by the first sync or edit that reaches Redis again. Each change has
an id: a worker whose last applied change is no longer where it read it (Redis restarted empty,
or lost its last writes) republishes the current state of the items it changed itself, unless
the new log changed them since, and replays the log from the start. The catalog version keys
cached lists: `applied.digest`, the digest naming the catalog's content, so two workers holding
different catalogs (an edit one of them holds back, a change the log lost) never share a list.
`followers` (the recommenders of pinned A/B versions) get every change too, each embedding the
item with its own encoder.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from threefold.apps.recs.catalog import Item, parse_item
from threefold.apps.recs.recommender import Recommender
from threefold.apps.recs.redis_state import ChangeLog, RedisState
from threefold.core.errors import DataError

logger = logging.getLogger(__name__)


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()


class CatalogSync:
    """Publishes this worker's item changes and applies the ones other workers published."""

    def __init__(
        self,
        recommender: Recommender,
        redis: RedisState,
        *,
        interval_seconds: float = 1.0,
        followers: Sequence[Recommender] = (),
    ) -> None:
        self.recommender = recommender
        self.followers = list(followers)
        self.redis = redis
        self.interval_seconds = interval_seconds
        self.applied_changes = 0
        self.last_applied_id: str | None = None  # of the change at applied_changes - 1
        self.pending: list[dict[str, Any]] = []  # made here, not in the log yet, oldest first
        # ids of the items this worker changed -> ids of the changes to each seen here since
        self.own_items: dict[str, set[str]] = {}
        self.last_sync = 0.0
        self._lock = threading.Lock()
        recommender.catalog.digest  # noqa: B018 - computed at start, not in the first request

    @property
    def model_id(self) -> str:
        """The encoder the shared vectors belong to (the serving ranker's, after any swap)."""
        return self.recommender.encoder.model_id

    @property
    def version(self) -> str:
        """`applied.digest`: the log changes applied and the catalog's content digest."""
        return f"{self.applied_changes}.{self.recommender.catalog.digest}"

    def sync(self, *, force: bool = False) -> None:
        """Apply item changes other workers published (at most every `interval_seconds`)."""
        if self.redis.url is None:
            return
        now = time.monotonic()
        if not force and now - self.last_sync < self.interval_seconds:
            return
        with self._lock:
            self.last_sync = now
            self._publish_pending()
            found = self.redis.changes_since(self.applied_changes)
            if found is not None and self._lost(found):
                found = self._recover()
            if found is None:
                return
            for change in found.changes:
                try:
                    self._apply(change)
                except (DataError, KeyError, TypeError, ValueError) as exc:
                    logger.error("skipping a malformed catalog change %r: %s", change, exc)
                self.applied_changes += 1
                self.last_applied_id = change.get("id") if isinstance(change, dict) else None
                self._seen(change)

    def _lost(self, found: ChangeLog) -> bool:
        """Whether the log no longer holds the changes applied here where they were read."""
        return self.applied_changes > 0 and (
            found.length < self.applied_changes or found.previous_id != self.last_applied_id
        )

    def _recover(self) -> ChangeLog | None:
        """After Redis lost changes applied here: republish this worker's own items as they are
        now, except those the log holds a change to that this worker never saw (an edit made
        since, on another worker), then read the log from the start (applying a change again
        changes nothing). Call with the lock held."""
        found = self.redis.changes_since(0)
        if found is None:
            return None
        edited_since = {
            item_id
            for change in found.changes
            if (item_id := _item_id_of(change)) in self.own_items
            and change.get("id") not in self.own_items[item_id]
        }
        republished = [self._state_of(i) for i in self.own_items if i not in edited_since]
        logger.warning(
            "the catalog change log lost changes this worker applied (it holds %d, %d were "
            "applied here: Redis restarted empty or lost its last writes); republishing the %d "
            "items changed here that it lacks and replaying it from the start",
            found.length,
            self.applied_changes,
            len(republished),
        )
        self.pending.extend(republished)
        self.applied_changes, self.last_applied_id = 0, None
        self._publish_pending()
        return self.redis.changes_since(0)

    def _seen(self, change: Any) -> None:
        """Note a change applied or made here to one of this worker's own items."""
        item_id = _item_id_of(change)
        if item_id in self.own_items and change.get("id") is not None:
            self.own_items[item_id].add(change["id"])

    def _state_of(self, item_id: str) -> dict[str, Any]:
        """The change that gives another worker this item as it is here (a delete if gone)."""
        item = self.recommender.catalog.get(item_id)
        vector = self.recommender.vector_of(item_id)
        if item is None or vector is None:
            return _identified({"op": "delete", "item_id": item_id})
        return self._upsert(item, vector)

    def _upsert(self, item: Item, vector: np.ndarray) -> dict[str, Any]:
        return _identified(
            {
                "op": "upsert",
                "item": item.to_dict(),
                "model_id": self.model_id,
                "vector": encode_vector(vector),
            }
        )

    def _apply(self, change: Mapping[str, Any]) -> None:
        if change.get("op") == "delete":
            self.recommender.remove_item(str(change["item_id"]))
            self._follow_delete(str(change["item_id"]))
            return
        item = parse_item(change["item"])
        vectors: dict[str, np.ndarray] = {}
        if change.get("model_id") == self.model_id and change.get("vector"):
            vectors[item.item_id] = np.frombuffer(
                base64.b64decode(change["vector"]), dtype=np.float32
            )
        self.recommender.upsert_items([item], vectors)
        self._follow_upsert([item])

    def follow(self, recommender: Recommender) -> None:
        """Give a recommender built on a copy of this worker's catalog every change from now on,
        and the ones made since that copy."""
        with self._lock:
            self.followers = [*self.followers, recommender]
            now = {item.item_id: item for item in self.recommender.catalog}
            copied = {item.item_id: item for item in recommender.catalog}
            changed = [item for item_id, item in now.items() if copied.get(item_id) != item]
            if changed:
                vectors = recommender.upsert_items(changed)
                self.redis.put_vectors(recommender.encoder.model_id, changed, vectors)
            for item_id in copied.keys() - now.keys():
                recommender.remove_item(item_id)

    def _follow_upsert(self, items: list[Item]) -> None:
        for follower in self.followers:
            self.redis.put_vectors(follower.encoder.model_id, items, follower.upsert_items(items))

    def _follow_delete(self, item_id: str) -> None:
        for follower in self.followers:
            follower.remove_item(item_id)

    def store(self, items: list[Item]) -> dict[str, list[str]]:
        """Add or replace items here, share their vectors and publish the changes."""
        existing = {item.item_id for item in items if self.recommender.has_item(item.item_id)}
        vectors = self.recommender.upsert_items(items)
        self.redis.put_vectors(self.model_id, items, vectors)
        self._follow_upsert(items)
        for item in items:
            self._publish(self._upsert(item, vectors[item.item_id]))
        return {
            "added": [i.item_id for i in items if i.item_id not in existing],
            "updated": [i.item_id for i in items if i.item_id in existing],
        }

    def delete(self, item_id: str) -> bool:
        """Remove an item here and publish it; False when it is not in the catalog."""
        if not self.recommender.remove_item(item_id):
            return False
        self._follow_delete(item_id)
        self._publish(_identified({"op": "delete", "item_id": item_id}))
        return True

    def _publish(self, change: dict[str, Any]) -> None:
        """Publish a change made here (without Redis configured there is nobody to tell)."""
        if self.redis.url is None:
            return
        with self._lock:
            self.own_items.setdefault(_item_id_of(change), set())
            self._seen(change)
            self.pending.append(change)
            self._publish_pending()
        self.last_sync = 0.0

    def _publish_pending(self) -> None:
        """Publish the changes Redis has not taken yet, oldest first; stop at the first refusal.

        A change that lands right after the last one applied here counts as applied (this
        worker made it); otherwise the next sync reads it from the log."""
        published = 0
        while self.pending:
            found = self.redis.publish_change(self.pending[0])
            if found is None:
                break
            change = self.pending.pop(0)
            published += 1
            length, previous_id = found
            if length == self.applied_changes + 1 and previous_id == self.last_applied_id:
                self.applied_changes, self.last_applied_id = length, change["id"]
        if published and (self.pending or published > 1):
            logger.info(
                "published %d catalog changes kept while Redis was away or lost (%d still waiting)",
                published,
                len(self.pending),
            )


def _item_id_of(change: Any) -> str | None:
    """The item a logged change is about (None for a malformed one)."""
    if not isinstance(change, Mapping):
        return None
    item = change.get("item")
    found = item.get("item_id") if isinstance(item, Mapping) else change.get("item_id")
    return found if isinstance(found, str) else None


def _identified(change: dict[str, Any]) -> dict[str, Any]:
    """`change` with an id of its own: a reader knows whether the log still holds it."""
    return {**change, "id": secrets.token_hex(8)}
