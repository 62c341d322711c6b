-- Remove a stopping worker's consumer from the group, unless it still holds
-- entries: those must stay pending so that another worker reclaims them.
-- KEYS: jobs
-- ARGV: group, consumer
-- Returns 1 if removed, 0 if it still held entries.
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
