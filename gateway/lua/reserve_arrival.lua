-- A place in the order of arrivals now, for an appointment's event that no queue claimed
-- (see arrival.lua).
-- KEYS: jobs
-- Returns the place: a stream entry id.
return reserve_arrival(KEYS[1])
