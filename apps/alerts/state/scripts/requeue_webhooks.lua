-- Re-send rejected webhook deliveries (an operator fixed the receiver): each one asked for
-- (none asked for: every one, oldest rejection first) leaves the stream of rejections, all its
-- entries at once, and is queued again, due now from its first attempt, unless it is queued
-- already. A re-send never pushes a waiting delivery out: the outbox may hold more than its
-- limit until the next new alert's queueing trims it (as it does, oldest first, logged).
-- KEYS: webhooks, webhooks-due, webhooks-order, webhooks-claims, webhooks-seq,
-- webhooks-rejected. ARGV: the alert ids (distinct; none: all).
-- Returns {requeued ids, ids not in the stream}.
-- include: queue_webhook
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found, order = {}, {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[6], '-', '+')) do
  local fields, id, alert = entry[2], nil, nil
  for i = 1, #fields, 2 do
    if fields[i] == 'alert_id' then id = fields[i + 1] end
    if fields[i] == 'alert' then alert = fields[i + 1] end
  end
  if id and alert then
    if not found[id] then
      found[id] = {entries = {}}
      order[#order + 1] = id
    end
    found[id].alert = alert
    found[id].entries[#found[id].entries + 1] = entry[1]
  end
end
local wanted = order
if #ARGV > 0 then
  wanted = {}
  for i = 1, #ARGV do wanted[#wanted + 1] = ARGV[i] end
end
local requeued, not_found, none_dropped = {}, {}, {}
for _, id in ipairs(wanted) do
  local rejected = found[id]
  if rejected then
    queue_webhook(KEYS, id, rejected.alert, now, math.huge, none_dropped)
    redis.call('XDEL', KEYS[6], unpack(rejected.entries))
    requeued[#requeued + 1] = id
  else
    not_found[#not_found + 1] = id
  end
end
return {requeued, not_found}
