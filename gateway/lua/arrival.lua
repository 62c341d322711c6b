-- Shared by the scripts that record where a job arrived: for the events of an appointment,
-- whose order counts (gateway/ordering.py), the id of the stream entry the job came as when
-- the gateway first saw it (the id changes when the job is retried or waits for its
-- send_at, so it is recorded then), kept in `<prefix>arrival:<job id>` as long as the job's
-- state.
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
