-- Shared by the scripts that keep an appointment's notifications: its data, the jobs
-- made from its waiting entries, and their cancellation. Strings are split by plain
-- searches: Lua's character classes cost several times more.
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

-- One waiting entry's fields (see gateway/notifications.py): due ms, kind, index, channel,
-- flag, ms it may go after its due time ('' for no deadline), recipient; false for an
-- entry that cannot be read. An entry written by 0.1, without the deadline field, reads as
-- one without a deadline: an upgrade keeps what was waiting.
local function entry_fields(entry)
  local fields = split(entry, '\31', 7)
  if fields then
    return fields
  end
  fields = split(entry, '\31', 6)
  if fields then
    table.insert(fields, 6, '')
  end
  return fields
end

-- Puts a notification's job on the stream, once: returns its id, or true when a job of
-- that id was made already (the same planning job run again). Taking the entry back
-- costs only that rare case; checking first would cost every job a lookup.
-- `states` is the prefix of the job states' keys.
local function make_job(states, jobs, ttl, id, job)
  local entry_id = redis.call('XADD', jobs, '*', 'job', job)
  if not redis.call('SET', states .. id, 'q:' .. entry_id, 'NX', 'EX', ttl) then
    redis.call('XDEL', jobs, entry_id)
    return true
  end
  return id
end

-- How many entries a list joined by \30 holds.
local function count_entries(joined)
  if joined == '' then
    return 0
  end
  local count, at = 1, string.find(joined, '\30', 1, true)
  while at do
    count, at = count + 1, string.find(joined, '\30', at + 1, true)
  end
  return count
end

-- The keys where a job waits, as cancel_made takes them: the caller's KEYS from `first`
-- on name the scheduled set, the retry set, the payloads and the attempts (in that
-- order), and `states` is the prefix of the job states' keys.
local function job_keys(keys, first, states)
  return {scheduled = keys[first], retry = keys[first + 1], payloads = keys[first + 2],
          attempts = keys[first + 3], states = states}
end

-- Cancels the jobs an appointment's plannings made, and those enqueued for it (in the set
-- `pending`), that are not done yet (as cancel_appointment.lua does); returns their ids.
-- `queue` names the keys where a job waits (see job_keys).
local function cancel_made(queue, pending, made, ttl)
  local ids = redis.call('SMEMBERS', pending)
  for id in string.gmatch(made, '[^\30]+') do
    table.insert(ids, id)
  end
  local cancelled = {}
  for _, id in ipairs(ids) do
    redis.call('ZREM', queue.scheduled, id)
    redis.call('ZREM', queue.retry, id)
    redis.call('HDEL', queue.payloads, id)
    redis.call('HDEL', queue.attempts, id)
    local state = redis.call('GET', queue.states .. id)
    if state ~= 'done' and state ~= 'dead' and state ~= 'cancelled' then
      redis.call('SET', queue.states .. id, 'cancelled', 'EX', ttl)
      table.insert(cancelled, id)
    end
  end
  redis.call('DEL', pending)
  return cancelled
end

-- An appointment's data is one string (one allocation, where a hash of its parts took
-- a dozen): its account, the planning job whose id its jobs carry, its waiting entries
-- and the jobs made from them (each list joined by \30), the order key of the event its
-- plan follows (gateway/ordering.py), and its context, joined by \29, a byte no id,
-- entry, key nor JSON text holds. Read as a table of these six, false when there is none.
local function read_data(key)
  local data = redis.call('GET', key)
  return data and split(data, '\29', 6)
end

-- Writes what read_data reads, for `ttl` seconds, or keeping the key's own time to live.
local function write_data(key, data, ttl)
  local value = table.concat(data, '\29')
  if ttl then
    redis.call('SET', key, value, 'EX', ttl)
  else
    redis.call('SET', key, value, 'KEEPTTL')
  end
end
