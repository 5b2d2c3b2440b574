-- Not a script on its own: pasted into ack_alerts.lua and requeue_webhooks.lua where they say
-- `-- include: queue_webhook`, so both queue a delivery alike.
-- queue_webhook(keys, id, alert, now, limit, dropped): queue one webhook delivery, due at `now`
-- from its first attempt, unless `id` is queued already; the queue keeps at most `limit`
-- deliveries, so the oldest are dropped to make room (their ids appended to `dropped`).
-- keys: webhooks, webhooks-due, webhooks-order, webhooks-claims, webhooks-seq.
-- Returns 1 when queued, 0 when it was queued already.
local function queue_webhook(keys, id, alert, now, limit, dropped)
  if redis.call('HSETNX', keys[1], id, alert) == 0 then return 0 end
  while redis.call('ZCARD', keys[3]) >= limit do
    local oldest = redis.call('ZRANGE', keys[3], 0, 0)[1]
    redis.call('HDEL', keys[1], oldest)
    redis.call('ZREM', keys[2], oldest)
    redis.call('ZREM', keys[3], oldest)
    redis.call('HDEL', keys[4], oldest)
    dropped[#dropped + 1] = oldest
  end
  redis.call('ZADD', keys[2], now, id)
  redis.call('ZADD', keys[3], redis.call('INCR', keys[5]), id)
  return 1
end
