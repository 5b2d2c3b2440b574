"""`RedisWebhookOutbox`: the alerts' webhook deliveries in Redis, queued by `ack_alerts`."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from threefold.apps.alerts.state.lua import lua_script
from threefold.core.webhook import REJECTED_LIMIT, OutboxEntry, RejectedDelivery, Requeued

# Under the store's prefix: webhooks (alert id -> alert json), webhooks-due (zset: when each
# delivery is due, Redis TIME in ms; a claim moves it a lease ahead), webhooks-order (zset:
# queue order, to drop the oldest), webhooks-claims (alert id -> "attempts|holder"),
# webhooks-seq (the order counter).
WEBHOOK_KEYS = ("webhooks", "webhooks-due", "webhooks-order", "webhooks-claims", "webhooks-seq")
# A stream of the deliveries receivers rejected for good (alert_id, status, answer, alert),
# capped at the newest `rejected_limit`; each entry's id is the time it was rejected.
REJECTED_KEY = "webhooks-rejected"


def webhook_keys(prefix: str) -> list[str]:
    """The outbox's Redis keys under `prefix`, in the order of `WEBHOOK_KEYS`."""
    return [prefix + name for name in WEBHOOK_KEYS]


class RedisWebhookOutbox:
    """A `core.webhook.WebhookOutbox` every consumer replica on this Redis shares: a claim is a
    lease (visibility timeout) taken in a Lua script, so a replica does not claim a delivery
    another one is posting, and a replica that dies leaves its claims to come due again.

    New deliveries are queued by `RedisStateStore.ack_alerts`, bounded by its limit; a re-send
    (`requeue_rejected`) goes through the same Lua function but never drops a waiting one.
    """

    def __init__(
        self,
        client,
        prefix: str,
        *,
        rejected_limit: int = REJECTED_LIMIT,
    ) -> None:
        self.client = client
        self.rejected_limit = rejected_limit
        self._keys = webhook_keys(prefix)
        self._items, self._due, self._order, self._claims, _ = self._keys
        self._rejected = prefix + REJECTED_KEY
        self._claim = client.register_script(lua_script("claim_webhooks"))
        self._retry = client.register_script(lua_script("retry_webhook"))
        self._reject = client.register_script(lua_script("reject_webhook"))
        self._requeue = client.register_script(lua_script("requeue_webhooks"))

    def claim(self, owner: str, limit: int, lease_s: float) -> list[OutboxEntry]:
        found = self._claim(
            keys=[self._items, self._due, self._claims],
            args=[owner, limit, math.ceil(lease_s * 1000)],
        )
        return [
            OutboxEntry(found[i], json.loads(found[i + 1]), int(found[i + 2]))
            for i in range(0, len(found), 3)
        ]

    def delivered(self, key: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self._items, key)
        pipe.zrem(self._due, key)
        pipe.zrem(self._order, key)
        pipe.hdel(self._claims, key)
        pipe.execute()

    def reject(self, key: str, status: int, answer: str) -> None:
        self._reject(
            keys=[self._items, self._due, self._order, self._claims, self._rejected],
            args=[key, status, answer, self.rejected_limit],
        )

    def retry_later(self, key: str, owner: str, delay_s: float) -> None:
        self._retry(keys=[self._due, self._claims], args=[key, owner, math.ceil(delay_s * 1000)])

    def pending(self) -> int:
        return int(self.client.hlen(self._items))

    def rejected(self, limit: int = 100) -> list[RejectedDelivery]:
        return [
            RejectedDelivery(
                key=fields["alert_id"],
                payload=json.loads(fields["alert"]),
                status=int(fields["status"]),
                answer=fields["answer"],
                at=int(entry_id.split("-", 1)[0]) / 1000,
            )
            for entry_id, fields in self.client.xrevrange(self._rejected, count=limit)
        ]

    def requeue_rejected(self, keys: Iterable[str] | None = None) -> Requeued:
        wanted = [] if keys is None else list(dict.fromkeys(keys))
        if keys is not None and not wanted:
            return Requeued()
        requeued, not_found = self._requeue(keys=[*self._keys, self._rejected], args=wanted)
        return Requeued(list(requeued), list(not_found))
