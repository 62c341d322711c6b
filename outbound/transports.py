"""The relay transport the configuration names: smarthost, mx or maildir."""

from __future__ import annotations

from gateway.settings import RelaySettings
from outbound.relay import RelayTransport


def build_transport(settings: RelaySettings) -> RelayTransport:
    """The transport `settings.transport` names: smarthost, mx or maildir."""
    if settings.transport == "maildir":
        from outbound.maildir import MaildirTransport

        return MaildirTransport(settings.maildir.path)
    # twisted.mail.smtp imports (and so installs) the default reactor: it may be imported
    # only once gateway.reactor has installed the asyncio reactor, hence here and not above
    from outbound.smtp_transports import MxTransport, SmarthostTransport

    if settings.transport == "smarthost":
        return SmarthostTransport(settings)
    return MxTransport(settings)
