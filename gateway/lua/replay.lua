-- Put a dead letter back on the jobs stream with fresh attempts.
-- KEYS: dead, jobs, state, attempts
-- ARGV: dead entry id, job id or '', state ttl s
-- Returns the new stream entry id, false if the dead letter is gone, or
-- 'no-job' for an entry that had no `job` field (there is nothing to replay).
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entries == 0 then
  return false
end
local fields = entries[1][2]
local job
for i = 1, #fields, 2 do
  if fields[i] == 'job' then
    job = fields[i + 1]
  end
end
if not job then
  return 'no-job'
end
local entry = redis.call('XADD', KEYS[2], '*', 'job', job)
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[3], 'q:' .. entry, 'EX', ARGV[3])
  redis.call('HDEL', KEYS[4], ARGV[2])
end
redis.call('XDEL', KEYS[1], ARGV[1])
return entry
