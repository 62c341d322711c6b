-- Move an entry to the dead letters with its reason, a `failed` event, and
-- acknowledge it. Only a job this worker claimed (ARGV[7] set) marks its id
-- dead: a malformed entry's id cannot be trusted to name anything. An entry
-- without a `job` field keeps its fields under `fields` (ARGV[11]), so that it
-- is never replayed as if it were a job.
-- A claimed job's sends made by a run that stopped before recording them are published
-- (see sends.lua).
-- KEYS: jobs, dead, events, state, attempts, appointment, delivered
-- ARGV: group, entry id, raw job, reason, failed at, attempts, job id or '',
--       state ttl s, events maxlen, event json, 'job' or 'fields',
--       history key prefix, history ttl s, notification kind, channel or '',
--       reached event json...
-- Returns 1, or 0 if the entry was already settled.
if settled(KEYS[1], ARGV[1], ARGV[2]) then
  return 0
end
for i = 16, #ARGV do
  publish(KEYS[3], ARGV[9], ARGV[12], ARGV[13], ARGV[i])
end
if ARGV[7] ~= '' then
  publish_sends(KEYS[7], ARGV[10], ARGV[14], ARGV[15], KEYS[3], ARGV[9], ARGV[12], ARGV[13])
end
local fields = {ARGV[11], ARGV[3], 'reason', ARGV[4], 'failed_at', ARGV[5],
                'attempts', ARGV[6], 'entry', ARGV[2]}
if ARGV[7] ~= '' then
  table.insert(fields, 'id')
  table.insert(fields, ARGV[7])
end
redis.call('XADD', KEYS[2], '*', unpack(fields))
publish(KEYS[3], ARGV[9], ARGV[12], ARGV[13], ARGV[10])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[4], 'dead', 'EX', ARGV[8])
  redis.call('HDEL', KEYS[5], ARGV[7])
  redis.call('SREM', KEYS[6], ARGV[7])
end
return 1
