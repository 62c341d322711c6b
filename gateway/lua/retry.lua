-- Put a failed job into the retry set for a later attempt, with a `deferred`
-- event. If its appointment was cancelled meanwhile it is dropped instead, with
-- a `skipped` event.
-- Events of outcomes already reached (ARGV[13] on) are recorded either way.
-- KEYS: jobs, state, retry, payloads, attempts, appointment, events
-- ARGV: group, entry id, job id, job json, due ms, attempts, state ttl s,
--       events maxlen, event json, has appointment (1/0), history key prefix,
--       history ttl s, reached event json...
-- Returns 1 when parked for retry (or already settled), 0 when dropped as cancelled.
if settled(KEYS[1], ARGV[1], ARGV[2]) then
  return 1
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
for i = 13, #ARGV do
  publish(KEYS[7], ARGV[8], ARGV[11], ARGV[12], ARGV[i])
end
if redis.call('GET', KEYS[2]) ~= 'q:' .. ARGV[2] then
  local event = cjson.decode(ARGV[9])
  event['status'] = 'skipped'
  event['reason'] = 'cancelled before it was done'
  publish(KEYS[7], ARGV[8], ARGV[11], ARGV[12], cjson.encode(event))
  return 0
end
publish(KEYS[7], ARGV[8], ARGV[11], ARGV[12], ARGV[9])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[6])
redis.call('SET', KEYS[2], 'r', 'EX', ARGV[7])
if ARGV[10] == '1' then
  redis.call('SADD', KEYS[6], ARGV[3])
end
return 1
