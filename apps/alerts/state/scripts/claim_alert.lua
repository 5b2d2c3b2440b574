-- Claim an alert: id marker (SET NX), cool-down check, copy in the outbox. KEYS: alert:<id>,
-- cool:<key>, outbox. ARGV: id, window end, cooldown_s, alert json, ttl. Returns 1/0/-1.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local last = redis.call('GET', KEYS[2])
if last and tonumber(ARGV[2]) - tonumber(last) < tonumber(ARGV[3]) then return -1 end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[5])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[5])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return 1
