-- A failed attempt: the owner's claimed delivery comes due again after a delay (left alone
-- when another sender holds it now). KEYS: webhooks-due, webhooks-claims.
-- ARGV: id, owner, delay_ms. Returns 1 when rescheduled, else 0.
local claim = redis.call('HGET', KEYS[2], ARGV[1])
if not claim then return 0 end
local bar = string.find(claim, '|', 1, true)
if string.sub(claim, bar + 1) ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], string.sub(claim, 1, bar))
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
