-- Make the jobs of a confirmation sent again, unless the appointment's plan follows a
-- cancellation or an event that came after the resend (the order key in its data, see
-- plan_notifications.lua): then nothing is made. Each job made is listed with the
-- appointment's pending jobs, so that a later move or cancellation cancels it.
-- KEYS: appointment data, jobs, the appointment's pending jobs
-- ARGV: the resend's position (gateway/ordering.py), job state key prefix, state ttl s,
--       then each job's id and job
-- Returns nothing when it made them, else {the order key, the job} of the event planned.
local data = read_data(KEYS[1])
-- A key's first digit is its kind's rank: '2', a cancellation (gateway/ordering.py).
if data and (string.sub(data[5], 1, 1) == '2' or ARGV[1] < string.sub(data[5], 2)) then
  return {data[5], data[2]}
end
for i = 4, #ARGV, 2 do
  if make_job(ARGV[2], KEYS[2], ARGV[3], ARGV[i], ARGV[i + 1]) ~= true then
    redis.call('SADD', KEYS[3], ARGV[i])
  end
end
