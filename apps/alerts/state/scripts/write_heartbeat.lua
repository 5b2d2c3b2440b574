-- One consumer's heartbeat, and the pruning of consumers gone quiet, judged by Redis's clock
-- (the consumers' hosts may disagree on the time) and in one step (no fresh beat is pruned).
-- KEYS[1]: the hash of beats (consumer -> JSON), KEYS[2]: the zset of when Redis last saw each
-- ARGV[1]: consumer, ARGV[2]: its beat (JSON), ARGV[3]: seconds after which a consumer is gone
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - ttl))
for _, consumer in ipairs(gone) do
  redis.call('HDEL', KEYS[1], consumer)
  redis.call('ZREM', KEYS[2], consumer)
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return #gone
