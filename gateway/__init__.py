"""mailgw gateway: configuration, accounts, jobs, the Redis queue and the daemon."""

__version__ = "0.1.0"
