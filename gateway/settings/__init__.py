"""The main configuration file's schema: every key, its default and what it means; one module
per section, the general value types in `types`, the paths and secrets in `files`."""

from gateway.settings.accounts import AccountsSettings
from gateway.settings.bounces import BouncesSettings
from gateway.settings.deadlines import DeadlinesSettings
from gateway.settings.files import (
    SECRET_MIN_BYTES,
    ConfigPath,
    ReadableFile,
    SecretFile,
    default_state_dir,
    read_secret,
)
from gateway.settings.inbound import InboundSettings, ProcessCount
from gateway.settings.log import LogSettings
from gateway.settings.main_file import Settings
from gateway.settings.metrics import MetricsSettings
from gateway.settings.queue import QueueSettings
from gateway.settings.redis import RedisNodes, RedisSettings, has_hash_tag, parse_multi_node_url
from gateway.settings.relay import MaildirRelay, MxRelay, RelaySettings, SmarthostRelay, StartTls
from gateway.settings.reply_tokens import ReplyTokensSettings
from gateway.settings.restart import RestartOnly, changed_restart_only, restart_only_keys
from gateway.settings.sender_domains import DkimKey, DkimSelector, SenderDomain
from gateway.settings.sms import SmsFileOptions, SmsSettings
from gateway.settings.suppression import SuppressionSettings
from gateway.settings.templates import TemplatesSettings
from gateway.settings.types import (
    MODEL_CONFIG,
    DnsName,
    Endpoint,
    ListenAddress,
    Resolver,
    parse_endpoint,
)

__all__ = [
    "MODEL_CONFIG",
    "SECRET_MIN_BYTES",
    "AccountsSettings",
    "BouncesSettings",
    "ConfigPath",
    "DeadlinesSettings",
    "DkimKey",
    "DkimSelector",
    "DnsName",
    "Endpoint",
    "InboundSettings",
    "ListenAddress",
    "LogSettings",
    "MaildirRelay",
    "MetricsSettings",
    "MxRelay",
    "ProcessCount",
    "QueueSettings",
    "ReadableFile",
    "RedisNodes",
    "RedisSettings",
    "RelaySettings",
    "ReplyTokensSettings",
    "Resolver",
    "RestartOnly",
    "SecretFile",
    "SenderDomain",
    "Settings",
    "SmarthostRelay",
    "SmsFileOptions",
    "SmsSettings",
    "StartTls",
    "SuppressionSettings",
    "TemplatesSettings",
    "changed_restart_only",
    "default_state_dir",
    "has_hash_tag",
    "parse_endpoint",
    "parse_multi_node_url",
    "read_secret",
    "restart_only_keys",
]
