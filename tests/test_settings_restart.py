"""The restart-only keys, marked on the settings' fields: which they are, and which changed."""

from __future__ import annotations

from gateway.settings import Settings, changed_restart_only, restart_only_keys

# The list the daemon kept by hand before the keys were marked on their fields.
RESTART_ONLY_BEFORE_MARKS = {
    "state_dir",
    "redis",
    "queue",
    "accounts.cache_size",
    "accounts.cache_ttl",
    "relay.transport",
    "relay.smarthost",
    "relay.mx",
    "relay.maildir",
    "relay.connect_timeout",
    "relay.command_timeout",
    "relay.max_connections_per_destination",
    "relay.messages_per_connection",
    "relay.connection_idle_timeout",
    "relay.tls_ca_file",
    "relay.helo_name",
    "templates.render_processes",
    "sms",
    "metrics",
    "inbound.listen",
    "inbound.web_listen",
    "inbound.tls_cert",
    "inbound.tls_key",
    "inbound.processes",
    "inbound.hostname",
    "inbound.max_message_size",
    "inbound.max_recipients",
    "inbound.max_connections_per_client",
    "inbound.line_length_limit",
    "inbound.soft_error_limit",
    "inbound.hard_error_limit",
    "inbound.error_sleep_time",
    "inbound.command_timeout",
}


def test_the_marked_keys_are_those_of_the_former_list() -> None:
    keys = restart_only_keys(Settings)
    assert set(keys) == RESTART_ONLY_BEFORE_MARKS
    assert len(keys) == len(set(keys))


def test_only_changed_restart_only_keys_are_named_in_the_files_order() -> None:
    before = Settings()
    after = Settings.model_validate(
        {
            "queue": {"concurrency": 5},
            "relay": {"retry_max": "2h", "smarthost": {"port": 2525}},
            "inbound": {"listen": "127.0.0.1:2526", "public_url": "https://example.com"},
            "accounts": {"cache_ttl": "5m", "cache_size": 10_000},
            "log": {"level": "debug"},
        }
    )
    assert changed_restart_only(before, after) == [
        "queue",
        "accounts.cache_ttl",
        "relay.smarthost",
        "inbound.listen",
    ]
    assert changed_restart_only(before, Settings()) == []
