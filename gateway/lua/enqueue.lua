-- Enqueue a validated job: onto the stream, or into the scheduled set when its
-- send_at is in the future. A job id seen before is refused (idempotency). An
-- appointment's event records its arrival (see arrival.lua).
-- KEYS: jobs, state, scheduled, payloads, appointment, arrival
-- ARGV: id, job json, due ms, now ms, state ttl s, has appointment (1/0), ordered (1/0)
-- Returns {1, entry id or 's'} when queued, {0, existing state} for a duplicate.
local state = redis.call('GET', KEYS[2])
if state then
  return {0, state}
end
local where
if tonumber(ARGV[3]) > tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
  where = 's'
  redis.call('SET', KEYS[2], where, 'EX', ARGV[5])
else
  where = redis.call('XADD', KEYS[1], '*', 'job', ARGV[2])
  redis.call('SET', KEYS[2], 'q:' .. where, 'EX', ARGV[5])
end
if ARGV[6] == '1' then
  redis.call('SADD', KEYS[5], ARGV[1])
end
if ARGV[7] == '1' then
  arrival(KEYS[6], where == 's' and reserve_arrival(KEYS[1]) or where, ARGV[5], true)
end
return {1, where}
