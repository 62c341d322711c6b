-- Shared by the scripts that settle a delivered entry: true once it is no longer
-- pending (acknowledged). A call sent again after its reply was lost (Redis went away
-- just after running it) then changes nothing, and records nothing twice.
local function settled(stream, group, entry)
  return #redis.call('XPENDING', stream, group, entry, entry, 1) == 0
end
