"""mailgw outbound: rendering, composition, DKIM, SMTP relay and SMS providers."""
