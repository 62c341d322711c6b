"""mailgw inbound: the reply-routing SMTP server, bounces and SMS webhooks."""
