"""Handoffs in Redis: conversations (atomic transitions with WATCH/MULTI) and pub/sub events.

Keys: `<prefix>handoff:<session_id>` (JSON), `<prefix>handoff:index` (sorted set of session
ids by handoff time), `<prefix>handoff:status:<status>` (sorted set per status of its session
ids by handoff time: a listing reads only its status's set) and `<prefix>handoff:waiting:<client
address>` (sorted set of the address's waiting session ids by handoff time, for the per-client
cap: a conversation leaves it in the same MULTI as its claim or end, and counts no more once
handed off `counts_for_s` ago, when its customer's session has run out; an opening prunes those,
and the set expires that long after its last write). Every transition moves the conversation
between the status sets in its MULTI; the index and the ended sets forget conversations handed
off more than `ttl_s` ago.

Conversations written by the previous version (the index only, no status sets) are filed in the
status sets by the first listing, and conversations that its workers open during a rolling update
by the listings after (`<prefix>handoff:synced`: the newest handoff filed, so each listing files
only those handed off since, less a margin). An entry in a status set whose conversation has
moved on without it (a transition by such a worker) is left out of the listing and refiled.
Channels: `<prefix>events:<channel>`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import redis

from threefold.apps.qa.handoff_queue import (
    ACTIVE,
    COUNTS_FOR_S,
    STATUSES,
    Conversation,
    TooManyWaiting,
    UnknownConversation,
    Update,
    conversation_from_dict,
)
from threefold.apps.qa.redis_watch import Queue, update_watched

# how far before the newest conversation filed a listing looks again for unfiled ones (a worker
# of the previous version may write a handoff a little after its time, or with a clock behind)
CATCH_UP_MARGIN_S = 300
CATCH_UP_BATCH = 1000
ENDED = tuple(status for status in STATUSES if status not in ACTIVE)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RedisHandoffStore:
    """A `HandoffStore` shared by every worker; two agents can never both claim a conversation."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        ttl_s: int = 7 * 24 * 3600,
        counts_for_s: int = COUNTS_FOR_S,
    ) -> None:
        """`ttl_s`: a conversation's lifetime; `counts_for_s`: how long a waiting one counts
        against its address's cap (the customers' `session_ttl_s`; never past `ttl_s`)."""
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.counts_for_s = min(counts_for_s, ttl_s)

    def key(self, session_id: str) -> str:
        return f"{self.prefix}handoff:{session_id}"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}handoff:index"

    def status_key(self, status: str) -> str:
        return f"{self.prefix}handoff:status:{status}"

    @property
    def synced_key(self) -> str:
        return f"{self.prefix}handoff:synced"

    def waiting_key(self, client: str) -> str:
        return f"{self.prefix}handoff:waiting:{client}"

    def open(self, conversation: Conversation, *, max_waiting: int | None = None) -> Conversation:
        if max_waiting is None or conversation.client is None:

            def opened(current: Conversation | None) -> Conversation:
                return current if current is not None and current.active else conversation

            return self._transact(conversation.session_id, opened)
        return self._open_capped(conversation, conversation.client, max_waiting)

    def _open_capped(
        self, conversation: Conversation, client: str, max_waiting: int
    ) -> Conversation:
        """`open` with the cap: WATCH on the conversation and the client's waiting set, so two
        workers opening for one address at once never both take its last place."""
        key, waiting_key = self.key(conversation.session_id), self.waiting_key(client)
        counted_after = conversation.waiting_since - self.counts_for_s  # earlier: customer gone
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key, waiting_key)
                    current = _conversation(pipe.get(key))
                    if current is not None and current.active:
                        return current
                    waiting = pipe.zcount(waiting_key, f"({counted_after}", "+inf")
                    if waiting >= max_waiting:
                        raise TooManyWaiting(waiting, max_waiting)
                    pipe.multi()
                    pipe.zremrangebyscore(waiting_key, "-inf", counted_after)
                    self._queue_write(pipe, conversation)
                    pipe.execute()
                    return conversation
                except redis.WatchError:
                    continue

    def get(self, session_id: str) -> Conversation | None:
        return _conversation(self.client.get(self.key(session_id)))

    def update(self, session_id: str, change: Update) -> Conversation:
        def changed(current: Conversation | None) -> Conversation:
            if current is None:
                raise UnknownConversation(session_id)
            return change(current)

        return self._transact(session_id, changed)

    def list(self, status: str, *, limit: int | None = None, offset: int = 0) -> list[Conversation]:
        """Reads the status's set (from `offset`, `limit` of them) and those conversations only."""
        self._catch_up()
        last = -1 if limit is None else offset + limit - 1
        ids = [_text(i) for i in self.client.zrange(self.status_key(status), offset, last)]
        if not ids:
            return []
        found = []
        for session_id, raw in zip(ids, self.client.mget([self.key(i) for i in ids]), strict=True):
            conversation = _conversation(raw)
            if conversation is not None and conversation.status == status:
                found.append(conversation)
            else:  # expired, or moved on by a worker of the previous version
                self._refile(session_id)
        return found

    def _catch_up(self) -> None:
        """File in their status sets the conversations handed off since the newest one filed
        (less `CATCH_UP_MARGIN_S`): all of them on a store the previous version wrote."""
        synced = self.client.get(self.synced_key)
        since = "-inf" if synced is None else float(synced) - CATCH_UP_MARGIN_S
        entries = self.client.zrangebyscore(self.index_key, since, "+inf", withscores=True)
        for start in range(0, len(entries), CATCH_UP_BATCH):
            batch = entries[start : start + CATCH_UP_BATCH]
            raws = self.client.mget([self.key(_text(i)) for i, _ in batch])
            with self.client.pipeline(transaction=False) as pipe:
                for raw in raws:
                    conversation = _conversation(raw)
                    if conversation is not None:  # NX: never moves one filed by a transition
                        pipe.zadd(
                            self.status_key(conversation.status),
                            {conversation.session_id: conversation.waiting_since},
                            nx=True,
                        )
                pipe.execute()
        if entries and (synced is None or entries[-1][1] > float(synced)):
            self.client.set(self.synced_key, repr(entries[-1][1]))

    def _refile(self, session_id: str) -> None:
        """Put the conversation in its status's set only (in none once it expired), atomically
        with a read of it: a transition meanwhile retries the refiling."""

        def refiled(raw: bytes | None) -> tuple[None, Queue]:
            conversation = _conversation(raw)
            if conversation is None:
                return None, lambda pipe: self._queue_filing(pipe, session_id, None, 0.0)
            status, since = conversation.status, conversation.waiting_since
            return None, lambda pipe: self._queue_filing(pipe, session_id, status, since)

        update_watched(self.client, self.key(session_id), refiled)

    def _queue_filing(
        self, pipe: Any, session_id: str, status: str | None, waiting_since: float
    ) -> None:
        """Queue the session's move to `status`'s set (out of every set when None)."""
        for other in STATUSES:
            if other != status:
                pipe.zrem(self.status_key(other), session_id)
        if status is None:
            pipe.zrem(self.index_key, session_id)
        else:
            pipe.zadd(self.status_key(status), {session_id: waiting_since})

    def _transact(self, session_id: str, change: Any) -> Conversation:
        def changed(raw: bytes | None) -> tuple[Conversation, Queue]:
            result = change(_conversation(raw))
            return result, lambda pipe: self._queue_write(pipe, result)

        return update_watched(self.client, self.key(session_id), changed)

    def _queue_write(self, pipe: Any, conversation: Conversation) -> None:
        """Queue the write of `conversation`, its index entry and its client's waiting entry."""
        session_id = conversation.session_id
        pipe.set(self.key(session_id), json.dumps(conversation.to_json()), ex=self.ttl_s)
        pipe.zadd(self.index_key, {session_id: conversation.waiting_since})
        self._queue_filing(pipe, session_id, conversation.status, conversation.waiting_since)
        forgotten = f"({time.time() - self.ttl_s}"  # handed off before: expired or soon
        for key in (self.index_key, *(self.status_key(status) for status in ENDED)):
            pipe.zremrangebyscore(key, "-inf", forgotten)
        if conversation.client is None:
            return
        waiting_key = self.waiting_key(conversation.client)
        if conversation.status == "waiting":
            pipe.zadd(waiting_key, {session_id: conversation.waiting_since})
            pipe.expire(waiting_key, self.counts_for_s)
        else:
            pipe.zrem(waiting_key, session_id)


def _conversation(raw: bytes | None) -> Conversation | None:
    return None if raw is None else conversation_from_dict(json.loads(raw))


class RedisEventBus:
    """An `EventBus` over Redis pub/sub: every worker's listeners see every worker's events."""

    def __init__(self, client: Any, *, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _channel(self, channel: str) -> str:
        return f"{self.prefix}events:{channel}"

    def publish(self, channel: str, event: dict[str, Any]) -> None:
        self.client.publish(self._channel(channel), json.dumps(event))

    def listen(
        self, channels: list[str], *, seconds: float, tick_s: float = 1.0
    ) -> Iterator[dict[str, Any] | None]:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(*[self._channel(c) for c in channels])
            deadline = time.monotonic() + seconds
            yield None
            while time.monotonic() < deadline:
                try:
                    message = pubsub.get_message(timeout=tick_s)
                except redis.ConnectionError:
                    return  # the stream ends; clients reconnect (and get a 503 while Redis is down)
                yield None if message is None else json.loads(message["data"])
        finally:
            pubsub.close()
