-- Keep what an appointment has planned: its waiting notifications are entries in its
-- data (see appointment_data.lua), with the context they share, and the appointment waits
-- once in the notifications set, scored by its next due entry; the job of each is made
-- only when it falls due (at once for those due now), and its id is kept in the data's
-- list of made jobs. A planning that replaces an earlier one (a move, a cancellation)
-- first drops, in the same step (so the scheduler cannot make one in between), the
-- entries the earlier one left waiting and the jobs already made and not yet done (see
-- cancel_made). Also keeps the clients' bookings, which appointments wait to text a
-- number (a STOP from it drops them), and the count of notifications waiting in all
-- (`waiting`). Everything it writes lasts at least `ttl` (past the last entry's due
-- time): the bookings and SMS-wait keys that other appointments share are never
-- shortened. The count and the notifications set are written once for the batch (see
-- plan_batch.lua).
-- The data keeps the order key of the event planned (gateway/ordering.py): an event of
-- another job whose key is not greater came before it (or after the cancellation), and
-- changes nothing, checked in the same step as the write.
-- KEYS: notifications, appointment data, jobs, waiting count, then, but for 'add' (which
--       cancels nothing), where a job waits (see job_keys) and the appointment's pending
--       jobs
-- ARGV: appointment id, source job id, the appointment's data as a first planning
--       leaves it (notifications.appointment_data, with its order key), what ('add' for a
--       booking, 'replace' for a move, 'cancel'), ttl s, the same as a number, job state
--       key prefix, state ttl s, booking score (start, epoch s), the SMS-wait key of the
--       number the SMS reminder goes to ('' for none), how many entries wait (a number),
--       the first one's due ms ('' for none), now ms and the history's ttl s (numbers:
--       what lasts past the last due entry), client count c (a number), c clients'
--       booking keys, then for each notification made now its job's id and its job
--       (notifications.notification_job)
-- Returns the dropped entries and the cancelled job ids, each list joined by \x1e,
-- the two joined by \x1d (a flat string: cheaper for Redis than nested replies); nothing
-- when there are none; for an event that changes nothing, {the order key, the job} of the
-- event planned.
local appointment, source, what, ttl, states = ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[7]
-- Written as a first planning leaves it, the earlier data read in the same command: the
-- other cases (a replacement, a planning run again, a late event) are the rare ones,
-- mended below.
local earlier = redis.call('SET', KEYS[2], ARGV[3], 'EX', ttl, 'GET')
earlier = earlier and split(earlier, '\29', 6)
local dropped, cancelled = '', ''
if not earlier then
  waiting_change = waiting_change + ARGV[11]
else
  -- Keys of digits compare as strings (gateway/ordering.py).
  if earlier[2] ~= source and split(ARGV[3], '\29', 6)[5] <= earlier[5] then
    put_back(KEYS[2], earlier, ARGV[13], ARGV[14])
    return {earlier[5], earlier[2]}
  end
  waiting_change = waiting_change + ARGV[11] - count_entries(earlier[3])
  -- The same job run again (a worker died before recording it done) finds its own
  -- planning, as does a later booking: what it made is kept, and nothing is dropped.
  if what ~= 'add' and earlier[2] ~= source then
    dropped = earlier[3]
    cancelled = cancel_made(job_keys(KEYS, 5, states), KEYS[9], earlier[4], ARGV[8])
    cancelled = table.concat(cancelled, '\30')
  elseif earlier[4] ~= '' or earlier[2] == source then
    -- The jobs made before stay listed, before those made now (a rerun's are listed);
    -- a rerun keeps the order of its first run.
    local data = split(ARGV[3], '\29', 6)
    if earlier[2] == source then
      data[4], data[5] = earlier[4], earlier[5]
    elseif data[4] == '' then
      data[4] = earlier[4]
    else
      data[4] = earlier[4] .. '\30' .. data[4]
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
  make_job(states, KEYS[3], ARGV[8], ARGV[i], ARGV[i + 1])
end
next_due[appointment] = ARGV[12] ~= '' and ARGV[12]
if ARGV[10] ~= '' then
  redis.call('SADD', ARGV[10], appointment)
  keep_for(ARGV[10], ttl, ARGV[6])
end
if dropped ~= '' or cancelled ~= '' then
  return dropped .. '\29' .. cancelled
end
