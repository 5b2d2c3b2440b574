-- A permanent rejection (the receiver answered a 4xx that retrying cannot fix): the delivery
-- leaves the outbox, whoever holds it, and is appended to a capped stream of rejections (its
-- entry id is the time) for an operator to read and re-send.
-- KEYS: webhooks, webhooks-due, webhooks-order, webhooks-claims, webhooks-rejected.
-- ARGV: id, status, answer (the start of the receiver's body), max rejections kept.
-- Returns 1 when the delivery was in the outbox (and is recorded), else 0.
local alert = redis.call('HGET', KEYS[1], ARGV[1])
if not alert then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('XADD', KEYS[5], 'MAXLEN', ARGV[4], '*',
  'alert_id', ARGV[1], 'status', ARGV[2], 'answer', ARGV[3], 'alert', alert)
return 1
