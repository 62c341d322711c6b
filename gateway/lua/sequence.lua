-- The calendar SEQUENCE a job gives its appointment: the one it was given if it ran
-- before, else the appointment's last one raised by the step (1 for a move or a
-- cancellation, 0 for a resend), kept for the job.
-- KEYS: the appointment's sequence hash
-- ARGV: job id, step, ttl s
-- Returns the job's sequence.
local known = redis.call('HGET', KEYS[1], ARGV[1])
if not known then
  known = redis.call('HINCRBY', KEYS[1], 'last', ARGV[2])
  redis.call('HSET', KEYS[1], ARGV[1], known)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return tonumber(known)
