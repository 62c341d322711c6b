-- Take ownership of a job read from the stream before running it. An entry
-- added with a plain XADD is first seen here: its id is recorded, or it is
-- parked in the scheduled set if its send_at is still ahead. An entry whose id
-- already belongs to another entry, or is finished, is a duplicate (or was
-- cancelled): it is acknowledged and removed with a `skipped` event. A cancelled
-- job's sends made by a run that stopped before recording them are published first
-- (see sends.lua). An appointment's event gets its arrival, recorded when the gateway
-- first sees it (see arrival.lua).
-- KEYS: jobs, state, scheduled, payloads, appointment, attempts, events, delivered,
--       arrival
-- ARGV: group, entry id, job id, job json, due ms, now ms, state ttl s,
--       has appointment (1/0), events maxlen, skipped-event json (reason unset),
--       history key prefix, history ttl s, notification kind, channel or '',
--       ordered (1/0)
-- Returns {'run', attempts so far, arrival or ''}, {'deferred', ''} or {'skip', state}
-- ({'skip', 'settled'} when the entry was already settled).
if settled(KEYS[1], ARGV[1], ARGV[2]) then
  return {'skip', 'settled'}
end
local state = redis.call('GET', KEYS[2])
local mine = 'q:' .. ARGV[2]
local ordered = ARGV[15] == '1'
if state == mine then
  local arrived = ordered and arrival(KEYS[9], ARGV[2], ARGV[7], false) or ''
  return {'run', redis.call('HGET', KEYS[6], ARGV[3]) or '0', arrived}
end
if not state then
  local arrived = ordered and arrival(KEYS[9], ARGV[2], ARGV[7], true) or ''
  if ARGV[8] == '1' then
    redis.call('SADD', KEYS[5], ARGV[3])
  end
  if tonumber(ARGV[5]) > tonumber(ARGV[6]) then
    redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
    redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
    redis.call('SET', KEYS[2], 's', 'EX', ARGV[7])
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[1], ARGV[2])
    return {'deferred', ''}
  end
  redis.call('SET', KEYS[2], mine, 'EX', ARGV[7])
  return {'run', redis.call('HGET', KEYS[6], ARGV[3]) or '0', arrived}
end
local reason
if state == 'cancelled' then
  reason = 'cancelled before it was done'
  publish_sends(KEYS[8], ARGV[10], ARGV[13], ARGV[14], KEYS[7], ARGV[9], ARGV[11], ARGV[12])
elseif state == 'done' then
  reason = 'duplicate: a job with this id was already done'
elseif state == 'dead' then
  reason = 'duplicate: a job with this id is in the dead letters'
else
  reason = 'duplicate: a job with this id is already queued'
end
local event = cjson.decode(ARGV[10])
event['reason'] = reason
publish(KEYS[7], ARGV[9], ARGV[11], ARGV[12], cjson.encode(event))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return {'skip', state}
