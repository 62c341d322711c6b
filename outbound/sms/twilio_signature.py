"""Twilio's webhook signatures: HMAC-SHA1 with the auth token, or a SharedKey's HMAC-SHA1/256."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import urlsplit

from gateway.sms_provider import WebhookRequest

SIGNATURE: Final = "x-twilio-signature"
# Present when a Webhook Setting signs the request with one of its SharedKeys instead of
# the auth token: "key=<SharedKey id>,algorithm=<HMAC_SHA1|HMAC_SHA256>".
SETTINGS: Final = "x-twilio-webhooks-signature-settings"
ALGORITHMS: Final[Mapping[str, str]] = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


def signature_problem(
    request: WebhookRequest, auth_token: bytes, shared_keys: Mapping[str, bytes]
) -> str | None:
    """Why `request` is not signed as Twilio signs webhooks, or None when it is.

    Without the settings header (or with an empty one): HMAC-SHA1 keyed with the auth
    token. With it: the header's algorithm (HMAC-SHA1 if it names none) keyed with the
    secret of the SharedKey it names. Either signs the URL Twilio called followed
    by each field's name and value, sorted by name, and is sent base64 in X-Twilio-Signature.
    """
    signature = request.headers.get(SIGNATURE, "")
    settings = request.headers.get(SETTINGS, "").strip()
    if not settings:
        key, algorithm, whose = auth_token, "HMAC_SHA1", "the configured auth token"
    else:
        named = _settings(settings)
        algorithm = named.get("algorithm", "HMAC_SHA1").upper()
        if algorithm not in ALGORITHMS:
            return f"unsupported signature algorithm {algorithm!r} (HMAC_SHA1 or HMAC_SHA256)"
        key_id = named.get("key", "")
        if key_id not in shared_keys:
            return f"signed with Twilio SharedKey {key_id!r}, which [sms.twilio] shared_keys lacks"
        key, whose = shared_keys[key_id], f"SharedKey {key_id!r}"
    fields = "".join(name + value for name, value in sorted(request.params.items()))
    for url in _url_forms(request.url):
        digest = hmac.new(key, (url + fields).encode(), ALGORITHMS[algorithm]).digest()
        if hmac.compare_digest(base64.b64encode(digest), signature.encode()):
            return None
    return (
        f"X-Twilio-Signature does not match {request.url} signed with {whose} "
        f"({algorithm.replace('_', '-')})"
    )


def _settings(header: str) -> dict[str, str]:
    # Read as twilio's own libraries read it: comma-separated name=value pairs, the first
    # non-empty value of a name counting.
    named: dict[str, str] = {}
    for part in header.split(","):
        name, equals, value = part.partition("=")
        if equals and value.strip():
            named.setdefault(name.strip(), value.strip())
    return named


def _url_forms(url: str) -> Sequence[str]:
    """The URL as given, without its port and with the scheme's default port: Twilio's own
    validator accepts each, as Twilio does not always sign the port the way it was written."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    host = netloc.rsplit(":", 1)[0] if parts.port is not None else netloc
    default = 443 if parts.scheme == "https" else 80
    return list(
        dict.fromkeys(
            [
                url,
                parts._replace(netloc=host).geturl(),
                parts._replace(netloc=f"{host}:{parts.port or default}").geturl(),
            ]
        )
    )
