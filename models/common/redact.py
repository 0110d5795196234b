"""Hide credentials in text that is printed (standard library only).

The one owner of the rule: the launcher masks what it prints with it, and the packager
(``packager.conventions``) masks every command, build line and error it prints. What is
executed always keeps the real values.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Optional

# scheme://userinfo@ : the userinfo ends at the last "@" before the path ("/", "?", "#") or a
# space/quote, so a password holding "@" is masked whole.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s'\"]*)@")
# Proxy variables are often written without a scheme: user:password@host:port.
_BARE_USERINFO = re.compile(r"^(?P<user>[^:/@\s]+):(?P<password>[^/\s]*)@(?=[^@/\s]+$)")


def _mask_userinfo(match: "re.Match[str]") -> str:
    user, sep, _password = match.group("userinfo").partition(":")
    return f"{match.group('scheme')}{user}:***@" if sep else f"{match.group('scheme')}***@"


def mask_credentials(text: str, name: Optional[str] = None) -> str:
    """``text`` with the password (or lone token) of every URL's userinfo replaced by ``***``:
    ``http://alice:S3cret@proxy:3128`` -> ``http://alice:***@proxy:3128``,
    ``https://TOKEN@host/x`` -> ``https://***@host/x``. ``name``: the variable the value
    belongs to; for ``*_proxy`` variables a scheme-less ``user:password@host:port`` is masked
    too. Only for printing: what is executed keeps the real values."""
    masked = _URL_USERINFO.sub(_mask_userinfo, text)
    if name and name.lower().endswith("_proxy") and "://" not in masked:
        masked = _BARE_USERINFO.sub(lambda m: f"{m.group('user')}:***@", masked)
    return masked


def without_userinfo(url: str) -> str:
    """``url`` with its ``user:password@`` removed entirely (not masked): for a URL that is
    published, an image label or an SBOM reference."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
