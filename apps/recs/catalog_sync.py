"""Catalog changes shared between workers through the Redis change log.

A worker applies an admin edit itself, publishes it, and replays what other workers published
(at most every `interval_seconds`; a request does not wait for another thread's sync). An edit
Redis does not take (an outage) waits in this worker and is published, in order, by the first
sync or edit that reaches Redis again. Changes go out `CHANGE_BATCH` per round trip; an edit
made here is in the log before its request answers, while edits republished after a loss go
out one batch in the request that noticed and the rest from one background thread per worker.
The log is read `CHANGE_READ_BATCH` changes per round trip (one read per sync; a forced sync, at
start, reads it all), the upserts of a read applied in one `upsert_items` call (one rebuild of
the feature tables), split where a delete of one of their items comes between.

The last edit wins, per item: each change carries the wall-clock time of the admin edit it
records (`edited_at`, `edit_id` breaking ties), and a worker keeps, per item changed through the
API, the stamp of the newest change it applied (`EditRecords`: one entry per item, deletes as
tombstones, the newest `TOMBSTONES_KEPT` of those). Applying a change older than that is a
no-op, so the log's order does not matter. Each logged change also has an id of its own: a
worker whose last applied change is no longer where it read it (Redis restarted empty, or lost
its last writes) replays the log from the start (over several syncs when it is longer than a
read), then republishes every item it holds a record for as it is now (a delete for a
tombstone), with the stamp of the edit that made it so, unless the new log holds that edit or a
newer one (the request that notices publishes one batch, the
background thread the rest): the workers converge on the newest edit whichever of them syncs
first. A delete whose tombstone every running worker dropped is not republished: an item of the
items file comes back on a worker started after the loss (the README's bound on deletes).
Changes logged before they carried `edited_at` count as the oldest (they apply in log order to
an item no newer edit reached). The catalog version keys cached lists: `applied.digest`, the
digest naming the catalog's content, so two workers holding different catalogs (an edit one of
them holds back, a change the log lost) never share a list. `followers` (the recommenders of
pinned A/B versions) get every change too, each embedding the item with its own encoder.
"""

from __future__ import annotations

import base64
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from threefold.apps.recs.catalog import Item, parse_item
from threefold.apps.recs.recommender import Recommender
from threefold.apps.recs.redis_state import CHANGE_BATCH, ChangeLog, RedisState
from threefold.core.errors import DataError

logger = logging.getLogger(__name__)

# Deleted items a worker keeps an edit record (a tombstone) for, oldest dropped first: about
# 180 bytes each. A tombstone dropped, the delete is no longer republished after a loss (an item
# of the items file then comes back on a worker started after it, until deleted again).
TOMBSTONES_KEPT = 100_000


class EditStamp(NamedTuple):
    """When the admin edit a change records was made; a later stamp is a newer edit."""

    edited_at: float  # wall clock, seconds
    edit_id: str  # breaks ties: every worker orders two edits made at one instant alike


# A change logged before changes carried `edited_at`: older than any edit stamped since.
UNSTAMPED = EditStamp(0.0, "")


def stamp_of(change: Mapping[str, Any]) -> EditStamp:
    """The edit a logged change records (UNSTAMPED for one logged without `edited_at`)."""
    edited_at, edit_id = change.get("edited_at"), change.get("edit_id")
    if (
        isinstance(edited_at, int | float)
        and not isinstance(edited_at, bool)
        and math.isfinite(edited_at)
        and isinstance(edit_id, str)
    ):
        return EditStamp(float(edited_at), edit_id)
    return UNSTAMPED


class EditRecords:
    """The newest edit applied to each item changed through the API: one entry per item; of
    deleted items (tombstones) the `tombstones_kept` deleted last."""

    def __init__(self, tombstones_kept: int = TOMBSTONES_KEPT) -> None:
        self.tombstones_kept = tombstones_kept
        self._present: dict[str, EditStamp] = {}
        self._tombstones: OrderedDict[str, EditStamp] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._present) + len(self._tombstones)

    def __iter__(self) -> Iterator[tuple[str, EditStamp, bool]]:
        """(item id, stamp, deleted) for every record."""
        for item_id, stamp in self._present.items():
            yield item_id, stamp, False
        for item_id, stamp in self._tombstones.items():
            yield item_id, stamp, True

    def held(self, item_id: str) -> EditStamp | None:
        return self._present.get(item_id) or self._tombstones.get(item_id)

    def outdated(self, item_id: str, stamp: EditStamp) -> bool:
        """Whether this worker applied the edit `stamp` records or a newer one of the item."""
        return _outdated(stamp, self.held(item_id))

    def note(self, item_id: str, stamp: EditStamp, *, deleted: bool) -> None:
        """Record the edit just applied to the item (replacing the one before)."""
        self._present.pop(item_id, None)
        self._tombstones.pop(item_id, None)
        if not deleted:
            self._present[item_id] = stamp
            return
        self._tombstones[item_id] = stamp
        if len(self._tombstones) > self.tombstones_kept:
            self._tombstones.popitem(last=False)


class LostEdit(NamedTuple):
    """An edit applied here that the change log lost, to republish: the item as it is here."""

    item_id: str
    stamp: EditStamp
    deleted: bool


class _Batch(NamedTuple):
    """Changes taken to publish in one round trip: the first `made_here` from `pending`, the
    rest built from the front of `lost` (the queue then, which a later loss replaces)."""

    changes: list[dict[str, Any]]
    made_here: int
    lost: list[LostEdit]


class _Upsert(NamedTuple):
    """A logged upsert to apply with the others of its run (`CatalogSync._apply_all`)."""

    item: Item
    vector: np.ndarray | None  # None: embed it here (logged for another encoder, or without)
    stamp: EditStamp


class _Replay(NamedTuple):
    """A replay of the log from its start after a loss (`CatalogSync._read`), over one sync or
    several: the newest edit logged per item in what it read so far."""

    logged: dict[str, EditStamp]
    applied_before: int  # changes applied here before the loss was noticed


def _outdated(stamp: EditStamp, held: EditStamp | None) -> bool:
    """Whether a change stamped `stamp` changes nothing where the edit `held` was applied: it is
    older, or that edit itself (changes logged without a stamp apply in log order)."""
    return held is not None and (stamp < held or (stamp == held and stamp != UNSTAMPED))


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
        self.lost: list[LostEdit] = []  # after a loss: to republish, after `pending`
        self.edits = EditRecords()  # the newest edit applied here, per item edited anywhere
        self._replay: _Replay | None = None  # reading the log from its start after a loss
        self.last_sync = 0.0
        self._lock = threading.Lock()
        self._publisher: threading.Thread | None = None  # publishing beyond a first batch
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
        """Apply item changes other workers published (at most every `interval_seconds`), one
        read of `CHANGE_READ_BATCH` per sync: a longer log is applied over the next syncs. While
        another thread holds the state (a sync, an edit, a batch being taken) a request does
        not wait: it serves what this worker holds; `force` waits, and reads the whole log."""
        if self.redis.url is None:
            return
        now = time.monotonic()
        if not force and now - self.last_sync < self.interval_seconds:
            return
        if not self._lock.acquire(blocking=force):
            return
        try:
            self.last_sync = now
            if published := self._publish_pending():
                logger.info(
                    "published %d catalog changes kept while Redis was away or lost (%d still "
                    "waiting)",
                    published,
                    len(self.pending) + len(self.lost),
                )
            more = self._read()
            while force and more:
                more = self._read()
        finally:
            self._lock.release()

    def _read(self) -> bool:
        """Read the log's next changes (one bounded read) and apply them, replaying it from the
        start if it lost changes applied here; whether it holds more. Call with the lock held."""
        found = self.redis.changes_since(self.applied_changes)
        if found is not None and self._lost(found):
            self._replay = _Replay({}, self.applied_changes)
            self.applied_changes, self.last_applied_id = 0, None
            found = self.redis.changes_since(0)
        if found is None:
            return False
        self._apply_all(found.changes)
        if (replay := self._replay) is not None:
            self._note_logged(found.changes)
            if self.applied_changes >= found.length:
                self._replay = None
                self._recover(replay, found.length)
        return bool(found.changes) and self.applied_changes < found.length

    def _apply_all(self, changes: list[dict[str, Any]]) -> None:
        """Apply changes read from the log at `applied_changes` on, the newest edit of each item
        winning: the upserts of a read in one `upsert_items` call (one rebuild of the feature
        tables), split only where a delete of one of their items comes between. Call with the
        lock held."""
        run: dict[str, _Upsert] = {}  # item id -> its newest upsert, by first upsert applied
        for change in changes:
            try:
                self._apply(change, run)
            except (DataError, KeyError, TypeError, ValueError) as exc:
                logger.error("skipping a malformed catalog change %r: %s", change, exc)
        self._upsert_run(run)
        if changes:
            self.applied_changes += len(changes)
            last = changes[-1]
            self.last_applied_id = last.get("id") if isinstance(last, dict) else None

    def _note_logged(self, changes: Sequence[Any]) -> None:
        """Count changes read (or published) during a replay as logged (`_recover`)."""
        if self._replay is None:
            return
        logged = self._replay.logged
        for change in changes:
            if (item_id := _item_id_of(change)) is not None:
                logged[item_id] = max(logged.get(item_id, UNSTAMPED), stamp_of(change))

    def _lost(self, found: ChangeLog) -> bool:
        """Whether the log no longer holds the changes applied here where they were read."""
        return self.applied_changes > 0 and (
            found.length < self.applied_changes or found.previous_id != self.last_applied_id
        )

    def _recover(self, replay: _Replay, length: int) -> None:
        """After Redis lost changes applied here and the log was replayed from the start (an
        older edit than the one applied here changes nothing): republish each item this worker
        holds an edit record for, as it is now and stamped with that edit, unless the log holds
        that edit or a newer one (or a change made here waits to be published): one batch at
        once, the rest from the background (`_publish_pending`). Call with the lock held."""
        logged, applied_before = replay
        waiting = {_item_id_of(change) for change in self.pending}
        self.lost = [  # a new list: a batch taken from the one before is not taken from it
            LostEdit(item_id, stamp, deleted)
            for item_id, stamp, deleted in self.edits
            if item_id not in waiting and (item_id not in logged or logged[item_id] < stamp)
        ]
        logger.warning(
            "the catalog change log lost changes this worker applied (it holds %d, %d were "
            "applied here: Redis restarted empty or lost its last writes); replayed it from the "
            "start, republishing the %d edited items whose last edit it lacks",
            length,
            applied_before,
            len(self.lost),
        )
        self._publish_pending()

    def _state_of(self, item_id: str, *, deleted: bool) -> dict[str, Any]:
        """The change that gives another worker this item as it is here (a delete if gone)."""
        item = None if deleted else self.recommender.catalog.get(item_id)
        vector = None if item is None else self.recommender.vector_of(item_id)
        if item is None or vector is None:
            return {"op": "delete", "item_id": item_id}
        return self._upsert(item, vector)

    def _upsert(self, item: Item, vector: np.ndarray) -> dict[str, Any]:
        return {
            "op": "upsert",
            "item": item.to_dict(),
            "model_id": self.model_id,
            "vector": encode_vector(vector),
        }

    def _apply(self, change: Mapping[str, Any], run: dict[str, _Upsert]) -> None:
        """Apply a logged delete, or add an upsert to `run`, unless this worker applied (or
        `run` holds) that edit of its item or a newer one. A delete of an item in `run` applies
        `run` first."""
        if not isinstance(change, Mapping):
            raise TypeError(f"a change is a JSON object, found {type(change).__name__}")
        stamp = stamp_of(change)
        if change.get("op") == "delete":
            item_id = str(change["item_id"])
            upsert = run.get(item_id)
            if _outdated(stamp, self.edits.held(item_id) if upsert is None else upsert.stamp):
                return
            if upsert is not None:
                self._upsert_run(run)
            self.recommender.remove_item(item_id)
            self._follow_delete(item_id)
            self.edits.note(item_id, stamp, deleted=True)
            return
        item = parse_item(change["item"])
        upsert = run.get(item.item_id)
        if _outdated(stamp, self.edits.held(item.item_id) if upsert is None else upsert.stamp):
            return
        vector = None
        if change.get("model_id") == self.model_id and change.get("vector"):
            vector = np.frombuffer(base64.b64decode(change["vector"]), dtype=np.float32)
        run[item.item_id] = _Upsert(item, vector, stamp)

    def _upsert_run(self, run: dict[str, _Upsert]) -> None:
        """Apply the upserts in `run` in one `upsert_items` call per recommender; empties it."""
        upserts = list(run.values())
        run.clear()
        if not upserts:
            return
        try:
            self._upsert_all(upserts)
        except (DataError, KeyError, TypeError, ValueError) as exc:
            # one bad change must not fail the others of the read (nor every sync after it)
            logger.error("a read's catalog upserts failed together (%s): applying one by one", exc)
            for upsert in upserts:
                try:
                    self._upsert_all([upsert])
                except (DataError, KeyError, TypeError, ValueError) as one:
                    logger.error("skipping a catalog change of %r: %s", upsert.item.item_id, one)

    def _upsert_all(self, upserts: list[_Upsert]) -> None:
        items = [upsert.item for upsert in upserts]
        vectors = {u.item.item_id: u.vector for u in upserts if u.vector is not None}
        self.recommender.upsert_items(items, vectors)
        self._follow_upsert(items)
        for upsert in upserts:
            self.edits.note(upsert.item.item_id, upsert.stamp, deleted=False)

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
        """Add or replace items here, share their vectors and publish the changes. Applied and
        stamped under the sync lock, so no sync can put an older logged edit of these items
        between the two (it would then stay, under the newer stamp)."""
        with self._lock:
            existing = {item.item_id for item in items if self.recommender.has_item(item.item_id)}
            vectors = self.recommender.upsert_items(items)
            self.redis.put_vectors(self.model_id, items, vectors)
            self._follow_upsert(items)
            self._publish([self._upsert(item, vectors[item.item_id]) for item in items])
        self.last_sync = 0.0
        return {
            "added": [i.item_id for i in items if i.item_id not in existing],
            "updated": [i.item_id for i in items if i.item_id in existing],
        }

    def delete(self, item_id: str) -> bool:
        """Remove an item here and publish it; False when it is not in the catalog."""
        with self._lock:
            if not self.recommender.remove_item(item_id):
                return False
            self._follow_delete(item_id)
            self._publish([{"op": "delete", "item_id": item_id}])
        self.last_sync = 0.0
        return True

    def _publish(self, changes: list[dict[str, Any]]) -> None:
        """Publish edits made here, each stamped now (without Redis configured there is nobody
        to tell); call with the lock held."""
        if self.redis.url is None:
            return
        for change in changes:
            item_id = str(_item_id_of(change))
            stamp = self._new_stamp(item_id)
            self.edits.note(item_id, stamp, deleted=change["op"] == "delete")
            self.pending.append(_logged(change, stamp))
        self._publish_pending()

    def _new_stamp(self, item_id: str) -> EditStamp:
        """Now, or just after the edit of the item applied here if this clock is behind it: an
        edit made after another worker's, as seen here, is the newer one."""
        now = time.time()
        held = self.edits.held(item_id)
        if held is not None and now <= held.edited_at:
            now = math.nextafter(held.edited_at, math.inf)
        return EditStamp(now, secrets.token_hex(8))

    def _publish_pending(self) -> int:
        """Publish what the log lacks: every edit made here (`pending`, `CHANGE_BATCH` per
        round trip: an edit is in the log before its request answers, so a worker that stops
        loses none), then one batch of `lost` here and the rest from one background thread per
        worker, so that no request republishes more than a batch; nothing here while that
        thread runs (it takes what is added meanwhile). A refusal leaves them to the next sync
        or edit. Returns how many were published here; call with the lock held."""
        if self._publisher is not None:
            return 0
        published = 0
        while self.pending or (self.lost and not published):
            batch = self._next_batch()
            found = self.redis.publish_changes(batch.changes)
            if found is None:
                return published
            self._landed(batch, found)
            published += len(batch.changes)
            if batch.made_here < len(batch.changes):
                break  # lost edits went out: the rest are for the background thread
        if self.lost:
            self._publisher = threading.Thread(
                target=self._publish_rest, name="recs-catalog-publish", daemon=True
            )
            self._publisher.start()
        return published

    def _publish_rest(self) -> None:
        """The background thread: a batch per round trip until all are published or Redis
        refuses one. The lock is held only to take a batch and to record it landed, so syncs
        and edits go on meanwhile."""
        published = 0
        try:
            while True:
                with self._lock:
                    if not (self.pending or self.lost):
                        self._publisher = None
                        break
                    batch = self._next_batch()
                found = self.redis.publish_changes(batch.changes)
                if found is None:
                    break
                with self._lock:
                    self._landed(batch, found)
                published += len(batch.changes)
        except Exception:  # a bug here must not stop publishing for good: the next sync goes on
            logger.exception("publishing catalog changes in the background failed")
        finally:
            with self._lock:
                if self._publisher is threading.current_thread():
                    self._publisher = None
                waiting = len(self.pending) + len(self.lost)
        logger.info(
            "published %d catalog changes in the background (%d still waiting)", published, waiting
        )

    def _next_batch(self) -> _Batch:
        """The next changes to publish: edits made here first, then lost edits, built now (the
        item as it is now, stamped with the edit recorded then; an edit of it since is newer).
        Call with the lock held."""
        made_here = self.pending[:CHANGE_BATCH]
        republished = [
            _logged(self._state_of(lost.item_id, deleted=lost.deleted), lost.stamp)
            for lost in self.lost[: CHANGE_BATCH - len(made_here)]
        ]
        return _Batch(made_here + republished, len(made_here), self.lost)

    def _landed(self, batch: _Batch, found: tuple[int, str | None]) -> None:
        """Redis took `batch`: drop it from what waits. If it landed right after the last change
        applied here, it counts as applied (this worker made it); otherwise the next sync reads
        it from the log. Call with the lock held."""
        del self.pending[: batch.made_here]
        if self.lost is batch.lost:
            del self.lost[: len(batch.changes) - batch.made_here]
        length, previous_id = found
        if (
            length == self.applied_changes + len(batch.changes)
            and previous_id == self.last_applied_id
        ):
            self.applied_changes, self.last_applied_id = length, batch.changes[-1]["id"]
            self._note_logged(batch.changes)

    def wait_for_publishing(self, timeout: float | None = None) -> bool:
        """Wait for the background publishing in flight; True when none is left running."""
        thread = self._publisher
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True


def _item_id_of(change: Any) -> str | None:
    """The item a logged change is about (None for a malformed one)."""
    if not isinstance(change, Mapping):
        return None
    item = change.get("item")
    found = item.get("item_id") if isinstance(item, Mapping) else change.get("item_id")
    return found if isinstance(found, str) else None


def _logged(change: dict[str, Any], stamp: EditStamp) -> dict[str, Any]:
    """`change` as logged: stamped with the edit it records, and with an id of its own (a
    reader knows whether the log still holds it; a republished edit gets a new one)."""
    return {
        **change,
        "edited_at": stamp.edited_at,
        "edit_id": stamp.edit_id,
        "id": secrets.token_hex(8),
    }
