-- Fold windows into their baselines (compare-and-set on the window count). KEYS: open.
-- ARGV: prefix, max_series, ttl, replay_s, then 10 values per window. Returns 1/0/-1 per window.
local prefix, max_series, ttl, replay = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV, 10 do
  local key, start, stop, expected = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local member = start .. ':' .. stop .. ':' .. key
  local base = prefix .. 'base:' .. key
  local hist = prefix .. 'hist:' .. key
  if not redis.call('ZSCORE', KEYS[1], member) then
    out[#out + 1] = 0
  elseif tonumber(redis.call('HGET', base, 'windows') or '0') ~= expected then
    out[#out + 1] = -1
  else
    redis.call('ZREM', KEYS[1], member)
    redis.call('HSET', base, 'share', ARGV[i + 4], 'volume', ARGV[i + 5], 'windows', ARGV[i + 6],
      'model', ARGV[i + 7], 'model_from', ARGV[i + 8])
    redis.call('EXPIRE', base, ttl)
    redis.call('ZADD', hist, start, ARGV[i + 9])
    redis.call('ZREMRANGEBYRANK', hist, 0, -(max_series + 1))
    redis.call('EXPIRE', hist, ttl)
    local suffix = key .. ':' .. start
    redis.call('DEL', prefix .. 'w:' .. suffix, prefix .. 'ex:' .. suffix, prefix .. 'models:' .. suffix)
    -- kept a while: a redelivered message is then a duplicate, not a late one
    redis.call('EXPIRE', prefix .. 'seen:' .. suffix, replay)
    out[#out + 1] = 1
  end
end
return out
