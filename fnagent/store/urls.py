"""What ``FN_DB_URL`` names, read without loading any database driver."""

from __future__ import annotations

POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_URL_FORM = "postgresql://user:password@host:port/database"


def is_postgres_url(url: str) -> bool:
    return url.partition("://")[0].lower() in POSTGRES_SCHEMES


def redact_url(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***`` (for logs and
    messages); a URL without one is returned as is."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = userinfo.split(":", 1)[0] + ":***@" + hosts
    return f"{scheme}{sep}{authority}{slash}{tail}"
