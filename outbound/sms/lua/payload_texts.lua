-- The same for the jobs waiting in the scheduled and retry sets (their payloads), by
-- HSCAN's cursor ('0' at the start and the end).
-- KEYS: payloads
-- ARGV: cursor, count
local scanned = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local found, pairs = {scanned[1]}, scanned[2]
for i = 2, #pairs, 2 do
  if string.find(pairs[i], 'sms.send', 1, true) then
    found[#found + 1] = pairs[i]
  end
end
return found
