-- Cancel every pending job of one appointment, those its plannings made and those
-- enqueued for it (see cancel_made): waiting jobs are removed, jobs already on the
-- stream are marked so the worker skips them.
-- KEYS: appointment data, the appointment's pending jobs, then where a job waits (see
--       job_keys)
-- ARGV: job state key prefix, state ttl s
-- Returns the cancelled job ids.
local data = read_data(KEYS[1])
local cancelled = cancel_made(job_keys(KEYS, 3, ARGV[1]), KEYS[2], data and data[4] or '',
                                  ARGV[2])
if data and data[4] ~= '' then
  data[4] = ''
  write_data(KEYS[1], data)
end
return cancelled
