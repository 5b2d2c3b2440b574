-- Claim due webhook deliveries: each is hidden from other senders for the lease (its due time
-- moves a lease ahead), so a holder that dies lets it come due again.
-- KEYS: webhooks, webhooks-due, webhooks-claims. ARGV: owner, limit, lease_ms.
-- Returns id, json, attempt (from 1) per claimed delivery.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[2])) do
  local alert = redis.call('HGET', KEYS[1], id)
  if alert then
    local claim = redis.call('HGET', KEYS[3], id)
    local attempt = 1 + (claim and tonumber(string.match(claim, '^(%d+)|')) or 0)
    redis.call('HSET', KEYS[3], id, attempt .. '|' .. ARGV[1])
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), id)
    out[#out + 1] = id
    out[#out + 1] = alert
    out[#out + 1] = attempt
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
