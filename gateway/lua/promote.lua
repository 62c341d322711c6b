-- Move jobs whose time has come from a waiting set (scheduled or retry) onto
-- the jobs stream, at most ARGV[2] of them per call, those with the nearest deadlines
-- (`expires_at`) first, chosen among the DEADLINE_WINDOW times as many that fell due first
-- (see deadline.lua), and put on the stream in that order.
-- KEYS: waiting set, payloads, jobs
-- ARGV: now ms, limit, job state key prefix, state ttl s
-- The state keys are built here: with a hash-tagged prefix they share the slot
-- of the declared keys, which is what Redis Cluster requires.
local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0,
                       limit * DEADLINE_WINDOW)
if #ids > 1 then
  local ranked = {}
  for i, id in ipairs(ids) do
    ranked[i] = {job_deadline(redis.call('HGET', KEYS[2], id)), i, id}
  end
  by_deadline(ranked)
  ids = {}
  for i = 1, math.min(limit, #ranked) do
    ids[i] = ranked[i][3]
  end
end
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
