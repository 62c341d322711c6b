-- KEYS, the first call's, name the notifications set and the waiting count of them all.
if waiting_change ~= 0 then
  redis.call('INCRBY', KEYS[4], waiting_change)
end
local scores, gone = {}, {}
for appointment, due in pairs(next_due) do
  if due then
    scores[#scores + 1] = due
    scores[#scores + 1] = appointment
  else
    gone[#gone + 1] = appointment
  end
end
if #scores > 0 then
  redis.call('ZADD', KEYS[1], unpack(scores))
end
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
end
