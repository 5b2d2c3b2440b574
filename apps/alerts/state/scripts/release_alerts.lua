-- Drop the owner's leases on the given alerts. KEYS: outbox-leases. ARGV: alert ids..., owner.
local owner = ARGV[#ARGV] .. '|'
for i = 1, #ARGV - 1 do
  local lease = redis.call('HGET', KEYS[1], ARGV[i])
  if lease and string.sub(lease, 1, #owner) == owner then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0
