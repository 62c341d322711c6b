-- Move jobs whose time has come from a waiting set (scheduled or retry) onto
-- the jobs stream, at most ARGV[2] of them per call.
-- KEYS: waiting set, payloads, jobs
-- ARGV: now ms, limit, job state key prefix, state ttl s
-- The state keys are built here: with a hash-tagged prefix they share the slot
-- of the declared keys, which is what Redis Cluster requires.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  local job = redis.call('HGET', KEYS[2], id)
  if job then
    local entry = redis.call('XADD', KEYS[3], '*', 'job', job)
    redis.call('SET', ARGV[3] .. id, 'q:' .. entry, 'EX', ARGV[4])
    redis.call('HDEL', KEYS[2], id)
  end
  redis.call('ZREM', KEYS[1], id)
end
return #ids
