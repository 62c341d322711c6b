-- What the calls of a batch of plan_notifications.lua leave to its end, where one command
-- each writes them for all (their `finish`): the changes of the waiting count, and each
-- appointment's score in the notifications set (false for none; the last call's wins).
local waiting_change, next_due = 0, {}

-- Makes a key that other appointments share last at least `ttl` (text, as EXPIRE takes
-- it, and `seconds`, the same as a number), never less than it did.
local function keep_for(key, ttl, seconds)
  if redis.call('TTL', key) < seconds then
    redis.call('EXPIRE', key, ttl)
  end
end
