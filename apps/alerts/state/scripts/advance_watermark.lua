-- Per-partition watermarks -> the store's (lowest, never moving back). KEYS: wm, wm:partitions.
-- ARGV: n, n (partition, value) pairs, then idle partitions to drop. Returns the watermark.
local pairs_end = 1 + 2 * tonumber(ARGV[1])
for i = pairs_end + 1, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
end
for i = 2, pairs_end, 2 do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if (not old) or tonumber(ARGV[i + 1]) > tonumber(old) then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
local lowest = nil
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  local n = tonumber(v)
  if lowest == nil or n < lowest then lowest = n end
end
local cur = redis.call('GET', KEYS[1])
if lowest ~= nil and ((not cur) or lowest > tonumber(cur)) then
  redis.call('SET', KEYS[1], tostring(lowest))
  return tostring(lowest)
end
return cur
