-- Acknowledge published alerts in one atomic step: each alert still in the outbox leaves it
-- (with its lease and sending note), is appended to the live feed and, with webhooks on, is
-- queued for webhook delivery; the queue keeps at most `limit` deliveries, dropping the oldest.
-- KEYS: outbox, outbox-leases, outbox-sent, feed, webhooks, webhooks-due, webhooks-order,
-- webhooks-claims, webhooks-seq. ARGV: max_feed, limit (0: no webhook), then id, json per
-- alert. Returns the ids of the queued deliveries dropped, oldest first.
-- include: queue_webhook
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local webhooks = {KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]}
local dropped = {}
for i = 3, #ARGV, 2 do
  local id, alert = ARGV[i], ARGV[i + 1]
  if redis.call('HDEL', KEYS[1], id) == 1 then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[1], '*', 'alert', alert)
    if limit > 0 then queue_webhook(webhooks, id, alert, now, limit, dropped) end
  end
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
return dropped
