"""The entry points: the `mailgw` commands, the daemon and its SMTP child processes, the
demo. The only modules that know every part of the gateway."""
