"""Lua scripts for every queue move that touches more than one key, so each is atomic.

A job id's state lives in the string `<prefix>job:<id>` (it expires after the
idempotency window):

- `q:<entry id>`: on the jobs stream as that entry (ready or in flight);
- `s`: waiting in the scheduled set for its `send_at`;
- `r`: waiting in the retry set for its next attempt;
- `done`, `dead`, `cancelled`: finished; another entry with this id is a duplicate.

Times are passed in (epoch milliseconds) rather than read with TIME, so the
callers' clock rules and tests can control them.
"""

from __future__ import annotations

from gateway.batching import Script

# Shared by the scripts that record outcomes: an event goes on the events
# stream and, when it concerns an appointment, on that appointment's history
# (a stream kept `ttl` seconds after its last entry; its key shares the
# prefix, hence the slot, of the declared keys).
PUBLISH = """
local function publish(events, maxlen, history, ttl, event)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'event', event)
  local appointment = cjson.decode(event)['appointment']
  if type(appointment) == 'string' then
    local key = history .. appointment
    redis.call('XADD', key, '*', 'event', event)
    redis.call('EXPIRE', key, ttl)
  end
end
"""

# Shared by the scripts that settle a delivered entry: true once it is no longer
# pending (acknowledged). A call sent again after its reply was lost (Redis went away
# just after running it) then changes nothing, and records nothing twice.
SETTLED = """
local function settled(stream, group, entry)
  return #redis.call('XPENDING', stream, group, entry, entry, 1) == 0
end
"""

# Shared by the scripts that end a job without recording its run (a cancellation found
# by CLAIM, a dead letter): the sends a run made before it stopped (the relay or the
# provider took them, and the job's `delivered` hash holds their message or provider id,
# where an outcome already recorded holds its status word instead) are published as
# `sent`, and marked recorded, so that the history says what the clients got.
SENDS = """
local recorded_statuses = {sent = true, delivered = true, deferred = true, bounced = true,
                           failed = true, skipped = true, suppressed = true}
local function publish_sends(delivered, template, kind, channel, events, maxlen, history, ttl)
  if channel == '' then
    return
  end
  local found = redis.call('HGETALL', delivered)
  if #found == 0 then
    return
  end
  local event = cjson.decode(template)
  event['status'] = 'sent'
  event['kind'] = kind
  event['channel'] = channel
  event['reason'] = 'sent by a run that stopped before recording it'
  for i = 1, #found, 2 do
    if not recorded_statuses[found[i + 1]] then
      event['recipient'] = found[i]
      event['message_id'] = found[i + 1]
      publish(events, maxlen, history, ttl, cjson.encode(event))
      redis.call('HSET', delivered, found[i], 'sent')
    end
  end
end
"""

# Shared by the scripts that record where a job arrived: for the events of an appointment,
# whose order counts (gateway/ordering.py), the id of the stream entry the job came as when
# the gateway first saw it (the id changes when the job is retried or waits for its
# send_at, so it is recorded then), kept in `<prefix>arrival:<job id>` as long as the job's
# state.
ARRIVAL = """
-- A place in the order of arrivals for a job that does not go on the jobs stream now: the
-- id the stream gives an entry added now, taken back at once (no worker can read it: the
-- script is atomic).
local function reserve_arrival(jobs)
  local id = redis.call('XADD', jobs, '*', 'arrival', '')
  redis.call('XDEL', jobs, id)
  return id
end

-- The job's arrival: the one recorded, its time to live renewed, or (none recorded, or
-- `first`: the gateway sees the job for the first time) `entry`, recorded now.
local function arrival(key, entry, ttl, first)
  if not first then
    local known = redis.call('GETEX', key, 'EX', ttl)
    if known then
      return known
    end
  end
  redis.call('SET', key, entry, 'EX', ttl)
  return entry
end
"""

# Enqueue a validated job: onto the stream, or into the scheduled set when its
# send_at is in the future. A job id seen before is refused (idempotency). An
# appointment's event records its arrival (see ARRIVAL).
# KEYS: jobs, state, scheduled, payloads, appointment, arrival
# ARGV: id, job json, due ms, now ms, state ttl s, has appointment (1/0), ordered (1/0)
# Returns {1, entry id or 's'} when queued, {0, existing state} for a duplicate.
ENQUEUE = Script(
    """
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
""",
    helpers=ARRIVAL,
)

# Take ownership of a job read from the stream before running it. An entry
# added with a plain XADD is first seen here: its id is recorded, or it is
# parked in the scheduled set if its send_at is still ahead. An entry whose id
# already belongs to another entry, or is finished, is a duplicate (or was
# cancelled): it is acknowledged and removed with a `skipped` event. A cancelled
# job's sends made by a run that stopped before recording them are published first
# (see SENDS). An appointment's event gets its arrival, recorded when the gateway
# first sees it (see ARRIVAL).
# KEYS: jobs, state, scheduled, payloads, appointment, attempts, events, delivered,
#       arrival
# ARGV: group, entry id, job id, job json, due ms, now ms, state ttl s,
#       has appointment (1/0), events maxlen, skipped-event json (reason unset),
#       history key prefix, history ttl s, notification kind, channel or '',
#       ordered (1/0)
# Returns {'run', attempts so far, arrival or ''}, {'deferred', ''} or {'skip', state}
# ({'skip', 'settled'} when the entry was already settled).
CLAIM = Script(
    """
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
""",
    helpers=PUBLISH + SETTLED + SENDS + ARRIVAL,
)

# Record a job's outcome and acknowledge it in one step: its events are
# published, the entry leaves the stream and the id is marked done.
# KEYS: jobs, state, attempts, appointment, events
# ARGV: group, entry id, job id, state ttl s, events maxlen, history key prefix,
#       history ttl s, event json...
# Returns 1, or 0 if the entry was already settled.
COMPLETE = Script(
    """
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
""",
    helpers=PUBLISH + SETTLED,
)

# Put a failed job into the retry set for a later attempt, with a `deferred`
# event. If its appointment was cancelled meanwhile it is dropped instead, with
# a `skipped` event.
# Events of outcomes already reached (ARGV[13] on) are recorded either way.
# KEYS: jobs, state, retry, payloads, attempts, appointment, events
# ARGV: group, entry id, job id, job json, due ms, attempts, state ttl s,
#       events maxlen, event json, has appointment (1/0), history key prefix,
#       history ttl s, reached event json...
# Returns 1 when parked for retry (or already settled), 0 when dropped as cancelled.
RETRY = Script(
    """
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
""",
    helpers=PUBLISH + SETTLED,
)

# Move an entry to the dead letters with its reason, a `failed` event, and
# acknowledge it. Only a job this worker claimed (ARGV[7] set) marks its id
# dead: a malformed entry's id cannot be trusted to name anything. An entry
# without a `job` field keeps its fields under `fields` (ARGV[11]), so that it
# is never replayed as if it were a job.
# A claimed job's sends made by a run that stopped before recording them are published
# (see SENDS).
# KEYS: jobs, dead, events, state, attempts, appointment, delivered
# ARGV: group, entry id, raw job, reason, failed at, attempts, job id or '',
#       state ttl s, events maxlen, event json, 'job' or 'fields',
#       history key prefix, history ttl s, notification kind, channel or '',
#       reached event json...
# Returns 1, or 0 if the entry was already settled.
DEAD_LETTER = Script(
    """
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
""",
    helpers=PUBLISH + SETTLED + SENDS,
)

# Move jobs whose time has come from a waiting set (scheduled or retry) onto
# the jobs stream, at most ARGV[2] of them per call.
# KEYS: waiting set, payloads, jobs
# ARGV: now ms, limit, job state key prefix, state ttl s
# The state keys are built here: with a hash-tagged prefix they share the slot
# of the declared keys, which is what Redis Cluster requires.
PROMOTE = Script("""
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
""")

# Put a dead letter back on the jobs stream with fresh attempts.
# KEYS: dead, jobs, state, attempts
# ARGV: dead entry id, job id or '', state ttl s
# Returns the new stream entry id, false if the dead letter is gone, or
# 'no-job' for an entry that had no `job` field (there is nothing to replay).
REPLAY = Script("""
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
""")

# Remove a stopping worker's consumer from the group, unless it still holds
# entries: those must stay pending so that another worker reclaims them.
# KEYS: jobs
# ARGV: group, consumer
# Returns 1 if removed, 0 if it still held entries.
FORGET_CONSUMER = Script("""
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
""")

# Shared by the scripts that keep an appointment's notifications: its data, the jobs
# made from its waiting entries, and their cancellation. Strings are split by plain
# searches: Lua's character classes cost several times more.
APPOINTMENT_DATA = """
-- The `count` parts of `text` between the bytes `sep`, or false when it has fewer.
local function split(text, sep, count)
  local parts, from = {}, 1
  for i = 1, count - 1 do
    local at = string.find(text, sep, from, true)
    if not at then
      return false
    end
    parts[i], from = string.sub(text, from, at - 1), at + 1
  end
  parts[count] = string.sub(text, from)
  return parts
end

-- Puts a notification's job on the stream, once: returns its id, or true when a job of
-- that id was made already (the same planning job run again). Taking the entry back
-- costs only that rare case; checking first would cost every job a lookup.
local function make_job(prefix, jobs, ttl, id, job)
  local entry_id = redis.call('XADD', jobs, '*', 'job', job)
  if not redis.call('SET', prefix .. 'job:' .. id, 'q:' .. entry_id, 'NX', 'EX', ttl) then
    redis.call('XDEL', jobs, entry_id)
    return true
  end
  return id
end

-- The context a notification's job carries: the appointment's, with a follow-up's place
-- in the account's list (which names its template), marked for one sent only if the
-- client has not booked again (flag '1').
local function job_context(context, kind, index, flag)
  local added = ''
  if kind == 'follow_up' then
    added = ',"follow_up":' .. index
  end
  if flag == '1' then
    added = added .. ',"only_if_not_rebooked":true'
  end
  if added == '' then
    return context
  end
  return string.sub(context, 1, -2) .. added .. '}'
end

-- Turns one waiting entry of an appointment (due ms, kind, index, channel, flag,
-- recipient joined by \\31, a byte no id or address may hold: see gateway/waiting.py)
-- into its job on the stream: an `email.send` to one address or an `sms.send` to one
-- number, with the appointment's context, under an id that names the planning that made
-- it (waiting.notification_job makes the same in Python for those due at once).
-- `data` is the appointment's (see read_data). Returns what make_job returns, or false
-- for an entry it cannot read.
local function dispatch(prefix, jobs, ttl, appointment, entry, data)
  local fields = split(entry, '\\31', 6)
  if not fields then
    return false
  end
  local kind, index, channel, flag, recipient = fields[2], fields[3], fields[4], fields[5],
    fields[6]
  local id = data[2] .. '/' .. kind .. '/' .. index .. '/' .. channel .. '/' .. recipient
  local job_kind, to = 'email.send', '[' .. cjson.encode(recipient) .. ']'
  if channel == 'sms' then
    job_kind, to = 'sms.send', cjson.encode(recipient)
  end
  local job = '{"v":1,"id":' .. cjson.encode(id) .. ',"kind":"' .. job_kind ..
    '","account":' .. cjson.encode(data[1]) .. ',"appointment":' ..
    cjson.encode(appointment) .. ',"to":' .. to .. ',"template":' ..
    cjson.encode(kind) .. ',"context":' .. job_context(data[6], kind, index, flag) .. '}'
  return make_job(prefix, jobs, ttl, id, job)
end

-- How many entries a list joined by \\30 holds.
local function count_entries(joined)
  if joined == '' then
    return 0
  end
  local count, at = 1, string.find(joined, '\\30', 1, true)
  while at do
    count, at = count + 1, string.find(joined, '\\30', at + 1, true)
  end
  return count
end

-- Cancels the jobs an appointment's plannings made, and those enqueued for it, that are
-- not done yet (as CANCEL_APPOINTMENT does); returns their ids.
local function cancel_made(prefix, appointment, made, ttl)
  local ids = redis.call('SMEMBERS', prefix .. 'appt:' .. appointment)
  for id in string.gmatch(made, '[^\\30]+') do
    table.insert(ids, id)
  end
  local cancelled = {}
  for _, id in ipairs(ids) do
    redis.call('ZREM', prefix .. 'scheduled', id)
    redis.call('ZREM', prefix .. 'retry', id)
    redis.call('HDEL', prefix .. 'payloads', id)
    redis.call('HDEL', prefix .. 'attempts', id)
    local state = redis.call('GET', prefix .. 'job:' .. id)
    if state ~= 'done' and state ~= 'dead' and state ~= 'cancelled' then
      redis.call('SET', prefix .. 'job:' .. id, 'cancelled', 'EX', ttl)
      table.insert(cancelled, id)
    end
  end
  redis.call('DEL', prefix .. 'appt:' .. appointment)
  return cancelled
end

-- An appointment's data is one string (one allocation, where a hash of its parts took
-- a dozen): its account, the planning job whose id its jobs carry, its waiting entries
-- and the jobs made from them (each list joined by \\30), the order key of the event its
-- plan follows (gateway/ordering.py), and its context, joined by \\29, a byte no id,
-- entry, key nor JSON text holds. Read as a table of these six, false when there is none.
local function read_data(key)
  local data = redis.call('GET', key)
  return data and split(data, '\\29', 6)
end

-- Writes what read_data reads, for `ttl` seconds, or keeping the key's own time to live.
local function write_data(key, data, ttl)
  local value = table.concat(data, '\\29')
  if ttl then
    redis.call('SET', key, value, 'EX', ttl)
  else
    redis.call('SET', key, value, 'KEEPTTL')
  end
end
"""

# Cancel every pending job of one appointment, those its plannings made and those
# enqueued for it (see cancel_made): waiting jobs are removed, jobs already on the
# stream are marked so the worker skips them.
# KEYS: appointment data
# ARGV: key prefix, appointment id, state ttl s
# Returns the cancelled job ids.
CANCEL_APPOINTMENT = Script(
    """
local data = read_data(KEYS[1])
local cancelled = cancel_made(ARGV[1], ARGV[2], data and data[4] or '', ARGV[3])
if data and data[4] ~= '' then
  data[4] = ''
  write_data(KEYS[1], data)
end
return cancelled
""",
    helpers=APPOINTMENT_DATA,
)

# The calendar SEQUENCE a job gives its appointment: the one it was given if it ran
# before, else the appointment's last one raised by the step (1 for a move or a
# cancellation, 0 for a resend), kept for the job.
# KEYS: the appointment's sequence hash
# ARGV: job id, step, ttl s
# Returns the job's sequence.
SEQUENCE = Script("""
local known = redis.call('HGET', KEYS[1], ARGV[1])
if not known then
  known = redis.call('HINCRBY', KEYS[1], 'last', ARGV[2])
  redis.call('HSET', KEYS[1], ARGV[1], known)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return tonumber(known)
""")

# What the calls of a batch of PLAN_NOTIFICATIONS leave to its end, where one command
# each writes them for all (their `finish`): the changes of the waiting count, and each
# appointment's score in the notifications set (false for none; the last call's wins).
PLAN_BATCH = """
local waiting_change, next_due = 0, {}

-- Makes a key that other appointments share last at least `ttl` (text, as EXPIRE takes
-- it, and `seconds`, the same as a number), never less than it did.
local function keep_for(key, ttl, seconds)
  if redis.call('TTL', key) < seconds then
    redis.call('EXPIRE', key, ttl)
  end
end
"""

# KEYS, the first call's, name the notifications set and the waiting count of them all.
PLAN_BATCH_FINISH = """
if waiting_change ~= 0 then
  redis.call('INCRBY', KEYS[4], waiting_change)
end
local scores, gone = {}, {}
for appointment, due in pairs(next_due) do
  if due then
    scores[#scores + 1] = due
    scores[#scores + 1] = appointment
  else
    gone[#gone + 1] = appointment
  end
end
if #scores > 0 then
  redis.call('ZADD', KEYS[1], unpack(scores))
end
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
end
"""

# Shared by PLAN_NOTIFICATIONS: what an event that comes too late does.
STALE = """
-- Puts back an appointment's data (as read_data reads it) that a planning overwrote, to
-- last as a planning would make it last now: `keep` seconds past its last waiting entry's
-- due time (ms, as `now`), or past now when none waits.
local function put_back(key, data, now, keep)
  local last = now
  for entry in string.gmatch(data[3], '[^\\30]+') do
    local due = tonumber(string.match(entry, '^%d+'))
    if due and due > last then
      last = due
    end
  end
  redis.call('SET', key, table.concat(data, '\\29'), 'EX', keep + math.ceil((last - now) / 1000))
end
"""

# Keep what an appointment has planned: its waiting notifications are entries in its
# data (see APPOINTMENT_DATA), with the context they share, and the appointment waits
# once in the notifications set, scored by its next due entry; the job of each is made
# only when it falls due (at once for those due now), and its id is kept in the data's
# list of made jobs. A planning that replaces an earlier one (a move, a cancellation)
# first drops, in the same step (so the scheduler cannot make one in between), the
# entries the earlier one left waiting and the jobs already made and not yet done (see
# cancel_made). Also keeps the clients' bookings, which appointments wait to text a
# number (a STOP from it drops them), and the count of notifications waiting in all
# (`waiting`). Everything it writes lasts at least `ttl` (past the last entry's due
# time): the bookings and SMS-wait keys that other appointments share are never
# shortened. The count and the notifications set are written once for the batch (see
# PLAN_BATCH).
# The data keeps the order key of the event planned (gateway/ordering.py): an event of
# another job whose key is not greater came before it (or after the cancellation), and
# changes nothing, checked in the same step as the write.
# KEYS: notifications, appointment data, jobs, waiting count
# ARGV: appointment id, source job id, the appointment's data as a first planning leaves
#       it (waiting.appointment_data, with its order key), what ('add' for a booking,
#       'replace' for a move, 'cancel'), ttl s, the same as a number, key prefix, state
#       ttl s, booking score (start, epoch s), the SMS-wait key of the number the SMS
#       reminder goes to ('' for none), how many entries wait (a number), the first one's
#       due ms ('' for none), now ms and the history's ttl s (numbers: what lasts past
#       the last due entry), client count c (a number), c clients' booking keys, then for
#       each notification made now its job's id and its job (waiting.notification_job)
# Returns the dropped entries and the cancelled job ids, each list joined by \x1e,
# the two joined by \x1d (a flat string: cheaper for Redis than nested replies); nothing
# when there are none; for an event that changes nothing, {the order key, the job} of the
# event planned.
PLAN_NOTIFICATIONS = Script(
    """
local appointment, source, what, ttl, prefix = ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[7]
-- Written as a first planning leaves it, the earlier data read in the same command: the
-- other cases (a replacement, a planning run again, a late event) are the rare ones,
-- mended below.
local earlier = redis.call('SET', KEYS[2], ARGV[3], 'EX', ttl, 'GET')
earlier = earlier and split(earlier, '\\29', 6)
local dropped, cancelled = '', ''
if not earlier then
  waiting_change = waiting_change + ARGV[11]
else
  -- Keys of digits compare as strings (gateway/ordering.py).
  if earlier[2] ~= source and split(ARGV[3], '\\29', 6)[5] <= earlier[5] then
    put_back(KEYS[2], earlier, ARGV[13], ARGV[14])
    return {earlier[5], earlier[2]}
  end
  waiting_change = waiting_change + ARGV[11] - count_entries(earlier[3])
  -- The same job run again (a worker died before recording it done) finds its own
  -- planning, as does a later booking: what it made is kept, and nothing is dropped.
  if what ~= 'add' and earlier[2] ~= source then
    dropped = earlier[3]
    cancelled = table.concat(cancel_made(prefix, appointment, earlier[4], ARGV[8]), '\\30')
  elseif earlier[4] ~= '' or earlier[2] == source then
    -- The jobs made before stay listed, before those made now (a rerun's are listed);
    -- a rerun keeps the order of its first run.
    local data = split(ARGV[3], '\\29', 6)
    if earlier[2] == source then
      data[4], data[5] = earlier[4], earlier[5]
    elseif data[4] == '' then
      data[4] = earlier[4]
    else
      data[4] = earlier[4] .. '\\30' .. data[4]
    end
    write_data(KEYS[2], data, ttl)
  end
end
local clients = ARGV[15]
for i = 16, 15 + clients do
  local key = ARGV[i]
  if what == 'cancel' then
    redis.call('ZREM', key, appointment)
  else
    redis.call('ZADD', key, ARGV[9], appointment)
  end
  keep_for(key, ttl, ARGV[6])
end
for i = 16 + clients, #ARGV, 2 do
  make_job(prefix, KEYS[3], ARGV[8], ARGV[i], ARGV[i + 1])
end
next_due[appointment] = ARGV[12] ~= '' and ARGV[12]
if ARGV[10] ~= '' then
  redis.call('SADD', ARGV[10], appointment)
  keep_for(ARGV[10], ttl, ARGV[6])
end
if dropped ~= '' or cancelled ~= '' then
  return dropped .. '\\29' .. cancelled
end
""",
    helpers=APPOINTMENT_DATA + PLAN_BATCH + STALE,
    finish=PLAN_BATCH_FINISH,
)

# Make the jobs of a confirmation sent again, unless the appointment's plan follows a
# cancellation or an event that came after the resend (the order key in its data, see
# PLAN_NOTIFICATIONS): then nothing is made. Each job made is listed with the
# appointment's pending jobs, so that a later move or cancellation cancels it.
# KEYS: appointment data, jobs
# ARGV: appointment id, the resend's position (gateway/ordering.py), key prefix, state
#       ttl s, then each job's id and job
# Returns nothing when it made them, else {the order key, the job} of the event planned.
RESEND_CONFIRMATION = Script(
    """
local data = read_data(KEYS[1])
-- A key's first digit is its kind's rank: '2', a cancellation (gateway/ordering.py).
if data and (string.sub(data[5], 1, 1) == '2' or ARGV[2] < string.sub(data[5], 2)) then
  return {data[5], data[2]}
end
for i = 5, #ARGV, 2 do
  if make_job(ARGV[3], KEYS[2], ARGV[4], ARGV[i], ARGV[i + 1]) ~= true then
    redis.call('SADD', ARGV[3] .. 'appt:' .. ARGV[1], ARGV[i])
  end
end
""",
    helpers=APPOINTMENT_DATA,
)

# A place in the order of arrivals now, for an appointment's event that no queue claimed
# (see ARRIVAL).
# KEYS: jobs
# Returns the place: a stream entry id.
RESERVE_ARRIVAL = Script("return reserve_arrival(KEYS[1])", helpers=ARRIVAL)

# Shared by the scripts that take entries out of an appointment's waiting ones: keep
# the rest (joined by \x1e) in its data (see APPOINTMENT_DATA) and wait again for the
# first of them to fall due, or no more; `gone` entries fewer wait in all (see
# PLAN_NOTIFICATIONS's count).
KEEP_WAITING = """
local function keep_waiting(notifications, prefix, appointment, data, rest, gone)
  data[3] = table.concat(rest, '\\30')
  write_data(prefix .. 'apptdata:' .. appointment, data)
  if gone > 0 then
    redis.call('DECRBY', prefix .. 'waiting', gone)
  end
  local first
  for _, entry in ipairs(rest) do
    local due = string.match(entry, '^%d+')
    if not first or tonumber(due) < tonumber(first) then
      first = due
    end
  end
  if first then
    redis.call('ZADD', notifications, first, appointment)
  else
    redis.call('ZREM', notifications, appointment)
  end
end
"""

# Make the jobs of the notifications due now, for at most ARGV[2] appointments per call.
# KEYS: notifications, jobs
# ARGV: now ms, limit, key prefix, state ttl s
# Returns {appointments seen, entries made into jobs}.
PROMOTE_NOTIFICATIONS = Script(
    """
local now, prefix = tonumber(ARGV[1]), ARGV[3]
local appointments = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
local made = 0
for _, appointment in ipairs(appointments) do
  local data = read_data(prefix .. 'apptdata:' .. appointment)
  if data then
    local rest, gone, ids = {}, 0, {}
    if data[4] ~= '' then
      ids[1] = data[4]
    end
    for entry in string.gmatch(data[3], '[^\\30]+') do
      local due = string.match(entry, '^%d+')
      if due and tonumber(due) > now then
        table.insert(rest, entry)
      else
        gone = gone + 1
        local id = due and dispatch(prefix, KEYS[2], ARGV[4], appointment, entry, data)
        if id then
          made = made + 1
        end
        if type(id) == 'string' then
          table.insert(ids, id)
        end
      end
    end
    data[4] = table.concat(ids, '\\30')
    keep_waiting(KEYS[1], prefix, appointment, data, rest, gone)
  else
    redis.call('ZREM', KEYS[1], appointment)
  end
end
return {#appointments, made}
""",
    helpers=APPOINTMENT_DATA + KEEP_WAITING,
)

# Drop what waits to text one number (it answered STOP), in the given appointments.
# KEYS: notifications
# ARGV: key prefix, number, then the appointment ids
# Returns, for each appointment, the entries dropped, joined by \x1e.
DROP_TEXTS = Script(
    """
local dropped = {}
for i = 3, #ARGV do
  local data = read_data(ARGV[1] .. 'apptdata:' .. ARGV[i])
  local rest, gone = {}, {}
  for entry in string.gmatch(data and data[3] or '', '[^\\30]+') do
    local fields = split(entry, '\\31', 6)
    if fields and fields[4] == 'sms' and fields[6] == ARGV[2] then
      table.insert(gone, entry)
    elseif fields then
      table.insert(rest, entry)
    end
  end
  if #gone > 0 then
    keep_waiting(KEYS[1], ARGV[1], ARGV[i], data, rest, #gone)
  end
  dropped[i - 2] = table.concat(gone, '\\30')
end
return dropped
""",
    helpers=APPOINTMENT_DATA + KEEP_WAITING,
)
