-- Count window entries once per message id. KEYS: wm, open, keys. ARGV: prefix, max_examples,
-- ttl, max_keys, then per entry key, start, end, message_id, sentiment, example, model.
-- Returns 1/0/-1 per entry (0 also for an id a closed window counted: a redelivery).
local wm = redis.call('GET', KEYS[1])
wm = wm and tonumber(wm)
local prefix, max_examples, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_keys = tonumber(ARGV[4])
local out = {}
for i = 5, #ARGV, 7 do
  local key, start, stop = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local id, sentiment, example, model = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local counts = prefix .. 'w:' .. key .. ':' .. start
  local seen = prefix .. 'seen:' .. key .. ':' .. start
  local examples = prefix .. 'ex:' .. key .. ':' .. start
  local models = prefix .. 'models:' .. key .. ':' .. start
  if wm and tonumber(stop) <= wm then
    out[#out + 1] = redis.call('SISMEMBER', seen, id) == 1 and 0 or -1
  elseif redis.call('SADD', seen, id) == 0 then
    out[#out + 1] = 0
  else
    redis.call('HINCRBY', counts, 'total', 1)
    redis.call('HINCRBY', counts, sentiment, 1)
    local wanted = example ~= '' and sentiment == 'negative'
    if wanted and redis.call('LLEN', examples) < max_examples then
      redis.call('RPUSH', examples, example)
      redis.call('EXPIRE', examples, ttl)
    end
    if model ~= '' then
      redis.call('SADD', models, model)
      redis.call('EXPIRE', models, ttl)
    end
    redis.call('ZADD', KEYS[2], stop, start .. ':' .. stop .. ':' .. key)
    redis.call('ZADD', KEYS[3], 'GT', stop, key)
    redis.call('EXPIRE', counts, ttl)
    redis.call('EXPIRE', seen, ttl)
    out[#out + 1] = 1
  end
end
-- The key list (latest window end per key) keeps the keys whose history has not expired, the
-- max_keys latest at most.
if wm then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (wm - ttl))
end
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(max_keys + 1))
return out
