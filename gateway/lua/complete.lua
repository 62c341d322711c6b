-- Record a job's outcome and acknowledge it in one step: its events are
-- published, the entry leaves the stream and the id is marked done.
-- KEYS: jobs, state, attempts, appointment, events
-- ARGV: group, entry id, job id, state ttl s, events maxlen, history key prefix,
--       history ttl s, event json...
-- Returns 1, or 0 if the entry was already settled.
if settled(KEYS[1], ARGV[1], ARGV[2]) then
  return 0
end
for i = 8, #ARGV do
  publish(KEYS[5], ARGV[5], ARGV[6], ARGV[7], ARGV[i])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], 'done', 'EX', ARGV[4])
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('SREM', KEYS[4], ARGV[3])
return 1
