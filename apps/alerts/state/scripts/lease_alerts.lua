-- Lease the outbox alerts that are free, held by ARGV[1], or whose lease expired.
-- KEYS: outbox, outbox-leases. ARGV: owner, lease_s, ttl. Returns the leased alerts' json.
local now = tonumber(redis.call('TIME')[1])
local out = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local lease = redis.call('HGET', KEYS[2], entries[i])
  local free = not lease
  if lease then
    local bar = string.find(lease, '|', 1, true)
    local holder, expiry = string.sub(lease, 1, bar - 1), tonumber(string.sub(lease, bar + 1))
    free = holder == ARGV[1] or expiry <= now
  end
  if free then
    redis.call('HSET', KEYS[2], entries[i], ARGV[1] .. '|' .. (now + tonumber(ARGV[2])))
    out[#out + 1] = entries[i + 1]
  end
end
if #entries > 0 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return out
