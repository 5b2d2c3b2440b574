"""Handoffs in Redis: conversations (atomic transitions with WATCH/MULTI) and pub/sub events.

Keys: `<prefix>handoff:<session_id>` (JSON), `<prefix>handoff:index` (sorted set of session
ids by handoff time) and `<prefix>handoff:waiting:<client address>` (sorted set of the address's
waiting session ids by handoff time, for the per-client cap: a conversation leaves it in the same
MULTI as its claim or end, and counts no more once handed off `counts_for_s` ago, when its
customer's session has run out; an opening prunes those, and the set expires that long after its
last write).
Channels: `<prefix>events:<channel>`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import redis

from threefold.apps.qa.handoff_queue import (
    COUNTS_FOR_S,
    Conversation,
    TooManyWaiting,
    UnknownConversation,
    Update,
    conversation_from_dict,
)
from threefold.apps.qa.redis_watch import Queue, update_watched


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

    def list(self, status: str) -> list[Conversation]:
        ids = [_text(i) for i in self.client.zrange(self.index_key, 0, -1)]
        if not ids:
            return []
        found = []
        for session_id, raw in zip(ids, self.client.mget([self.key(i) for i in ids]), strict=True):
            if raw is None:
                self.client.zrem(self.index_key, session_id)
                continue
            conversation = conversation_from_dict(json.loads(raw))
            if conversation.status == status:
                found.append(conversation)
        return found

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
