"""Catalog changes shared between workers through the Redis change log.

A worker applies an admin edit itself, publishes it, and replays what other workers published
(at most every `interval_seconds`). An edit Redis does not take (an outage) waits in this worker
and is published, in order, by the first sync or edit that reaches Redis again. The catalog
version keys cached lists: `applied.unpublished`, plus this worker's token while it holds edits
the log has not got (two workers with one such edit each have different catalogs).
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
from threefold.apps.recs.redis_state import RedisState
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
        self.unpublished_changes = 0  # made here without Redis configured: nobody to tell
        self.pending: list[dict[str, Any]] = []  # made here, not in the log yet, oldest first
        self.last_sync = 0.0
        self._token = secrets.token_hex(4)
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """The encoder the shared vectors belong to (the serving ranker's, after any swap)."""
        return self.recommender.encoder.model_id

    @property
    def version(self) -> str:
        local = f"{self.applied_changes}.{self.unpublished_changes + len(self.pending)}"
        return f"{local}.{self._token}" if self.pending else local

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
            if found is None:
                return
            start, changes = found
            if start < self.applied_changes:  # re-applying this worker's own changes is harmless
                logger.warning(
                    "the catalog change log holds %d changes, fewer than the %d applied here "
                    "(Redis lost it); applying it from the start",
                    len(changes),
                    self.applied_changes,
                )
                self.applied_changes = start
            for change in changes:
                try:
                    self._apply(change)
                except (DataError, KeyError, TypeError, ValueError) as exc:
                    logger.error("skipping a malformed catalog change %r: %s", change, exc)
                self.applied_changes += 1

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
            self._publish(
                {
                    "op": "upsert",
                    "item": item.to_dict(),
                    "model_id": self.model_id,
                    "vector": encode_vector(vectors[item.item_id]),
                }
            )
        return {
            "added": [i.item_id for i in items if i.item_id not in existing],
            "updated": [i.item_id for i in items if i.item_id in existing],
        }

    def delete(self, item_id: str) -> bool:
        """Remove an item here and publish it; False when it is not in the catalog."""
        if not self.recommender.remove_item(item_id):
            return False
        self._follow_delete(item_id)
        self._publish({"op": "delete", "item_id": item_id})
        return True

    def _publish(self, change: dict[str, Any]) -> None:
        with self._lock:
            if self.redis.url is None:
                self.unpublished_changes += 1
            else:
                self.pending.append(change)
                self._publish_pending()
        self.last_sync = 0.0

    def _publish_pending(self) -> None:
        """Publish the changes Redis has not taken yet, oldest first; stop at the first refusal."""
        published = 0
        while self.pending:
            length = self.redis.publish_change(self.pending[0])
            if length is None:
                break
            self.pending.pop(0)
            published += 1
            if length == self.applied_changes + 1:
                self.applied_changes = length
        if published and (self.pending or published > 1):
            logger.info(
                "published %d catalog changes kept while Redis was away (%d still waiting)",
                published,
                len(self.pending),
            )
