"""Keep credentials out of logs and error messages.

A download URL may carry a user name and password (``https://user:pass@host/...``) or a token in its
query string (``?token=...``, pre-signed ``X-Amz-Signature=...``). Every message this package writes
shows ``redact_url(url)`` instead of the URL, and ``scrub`` removes the secret values from any text that
came from elsewhere (an exception's message), so no credential reaches a log, an error or the lock file.
"""
from __future__ import annotations

import base64
import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

# Query parameters whose values are secrets, matched case-insensitively: names holding one of these
# words (password, passwd, token, access_token, api_key, apikey, client_secret, signature, sig, ...),
# the short names below exactly (``pw=``, ``pwd=``, ``sas=``: too short to match inside other names),
# and every parameter of AWS's pre-signed URLs (``X-Amz-Credential``, ``X-Amz-Signature``, ...).
_SECRET_PARAM = re.compile(r"token|key|secret|passw|sig|credential|auth|session|code", re.IGNORECASE)
_SECRET_EXACT = {"pw", "pwd", "sas", "pass"}
_SECRET_PREFIX = ("x-amz-",)
MASK = "***"


def is_secret_param(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a credential."""
    low = name.strip().lower()
    return bool(_SECRET_PARAM.search(low)) or low in _SECRET_EXACT or low.startswith(_SECRET_PREFIX)


def _secret_values(url: str) -> list[str]:
    parts = urlsplit(url)
    values = []
    if parts.password:
        values += [parts.password, unquote(parts.password)]
    if parts.username:
        values += [parts.username, unquote(parts.username)]
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if value and is_secret_param(name):
            values += [value, quote(value, safe="")]
    return sorted({v for v in values if v}, key=len, reverse=True)


def redact_url(url: str) -> str:
    """The URL without user info, with secret query values masked and without a fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = urlencode(
        [(k, MASK if v and is_secret_param(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def scrub(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` (password, user name, secret query values) masked."""
    for secret in _secret_values(url):
        text = text.replace(secret, MASK)
    return text


def request_target(url: str) -> tuple[str, dict[str, str]]:
    """Split user info off ``url``: the URL to request and an ``Authorization`` header (or none).

    urllib cannot use user info in a URL; a Basic header carries it instead. The caller sends the header
    as an unredirected one, so a redirect to another host (GitHub's LFS storage) never receives it.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), {"Authorization": f"Basic {token}"}
