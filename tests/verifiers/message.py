"""A realistic notification (text, HTML and an .ics invitation, ~12 KB) to sign."""

from __future__ import annotations

from email import policy
from email.headerregistry import Address
from email.message import EmailMessage

BUSINESS_NAME = 'Café « Zoë\'s », Hair & Co. "Le Salon", Paris'

_PARAGRAPH = (
    "Your appointment for a Haircut with Zoë is confirmed for Tuesday, March 4, 2025 at "
    "10:30am (Europe/Paris). If you need to cancel or reschedule, use the link below; "
    "changes are possible up to 24 hours before the appointment. "
)


def realistic_message(from_name: str = BUSINESS_NAME, domain: str = "example.com") -> bytes:
    """The message as the gateway sends it: CRLF line endings, quoted-printable parts."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address(from_name, "scheduling", domain)
    message["Reply-To"] = "owner@example.net"
    message["To"] = "Jean Dupont <client@example.org>"
    message["Subject"] = "Appointment confirmed: Haircut on Tuesday, March 4 at 10:30am"
    message["Date"] = "Mon, 03 Mar 2025 09:00:00 +0000"
    message["Message-ID"] = f"<20250303090000.abc123@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["List-Unsubscribe"] = f"<https://{domain}/unsubscribe/abc123>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    text = "Hello Jean,\n\n" + "\n\n".join([_PARAGRAPH] * 14) + "\n\nSee you soon,\nZoë\n"
    html = (
        '<!DOCTYPE html>\n<html>\n  <head><meta charset="utf-8"></head>\n'
        '  <body style="font-family: Arial, sans-serif">\n'
        + f'    <p style="margin: 0 0 12px 0; color: #333333">{_PARAGRAPH}</p>\n'
        * 23
        + f'    <p><a href="https://{domain}/schedule/abc123">Reschedule</a></p>\n'
        "  </body>\n</html>\n"
    )
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailgw//EN\r\nMETHOD:REQUEST\r\n"
        f"BEGIN:VEVENT\r\nUID:abc123@{domain}\r\nDTSTAMP:20250303T090000Z\r\n"
        "DTSTART:20250304T093000Z\r\nDTEND:20250304T103000Z\r\nSUMMARY:Haircut with Zoë\r\n"
        "LOCATION:12 rue de la Paix\\, Paris\r\n"
        "DESCRIPTION:Bring your booking reference.\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    message.add_attachment(
        ics.encode(),
        maintype="text",
        subtype="calendar",
        filename="invite.ics",
        params={"method": "REQUEST"},
    )
    return message.as_bytes()
