"""Which addresses are the dashboard's own: the Host a request names and the Origin a form comes from.

A browser sends to 127.0.0.1 whatever a name resolves to, so a page of another site whose name its owner
points at 127.0.0.1 (DNS rebinding) reaches the dashboard with that name as its Host, and its own origin
as the Origin of a form it posts. Only the name tells them apart, so the dashboard answers only names it
knows to be its own:

- `dashboard.public_url` when it is set (the address people open, behind a proxy), and the listening
  address too (a proxy may pass that on);
- else the listening address: a loopback one (127.0.0.1, ::1, localhost) by any loopback name, one on
  every interface (0.0.0.0, ::) by any address of a machine — an IP literal, never a name, since a name
  is what rebinding forges — and any other by itself; always on the listening port.

An Origin is its own when its scheme is the public URL's (or http) and its host and port are own.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["OwnAddress"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::"})


def _split(host: str) -> tuple[str, int | None] | None:
    """`host[:port]` (an IPv6 literal in brackets) as (lower-case host, port or None); None when it is
    not one."""
    try:
        parts = urlsplit(f"//{host.strip()}")
        port = parts.port
    except ValueError:
        return None
    name = parts.hostname
    if not name or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return name.lower(), port


def _default(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


class OwnAddress:
    """The dashboard's own addresses, from its public URL (or None) and where it listens."""

    def __init__(self, public_url: str | None, host: str, port: int) -> None:
        self.port = port
        self._bound = host.strip().lower().strip("[]")
        self._public: tuple[str, str, int] | None = None  # (scheme, host, port)
        if public_url:
            parts = urlsplit(public_url)
            if parts.hostname:
                self._public = (parts.scheme, parts.hostname.lower(), parts.port or _default(parts.scheme))

    def own_host(self, host: str | None) -> bool:
        """Whether a request's Host header names this dashboard."""
        if not host or not host.isascii() or not host.isprintable():
            return False
        found = _split(host)
        if found is None:
            return False
        name, port = found
        if self._public is not None:
            scheme, public_host, public_port = self._public
            if (name, port or _default(scheme)) == (public_host, public_port):
                return True
        if (port or 80) != self.port:
            return False
        if self._bound in _EVERY_INTERFACE:
            return _ip(name) is not None
        bound_ip = _ip(self._bound)
        if self._bound in _LOOPBACK_NAMES or (bound_ip is not None and bound_ip.is_loopback):
            address = _ip(name)
            return name == "localhost" or (address is not None and address.is_loopback)
        return name == self._bound

    def own_origin(self, origin: str) -> bool:
        """Whether a form's `Origin` is this dashboard's own page."""
        if not origin.isascii() or not origin.isprintable():
            return False
        try:
            parts = urlsplit(origin.strip())
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            return False
        default = _default(parts.scheme)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        where = f"{host}:{port or default}"
        if (
            self._public is not None
            and (parts.scheme, parts.hostname.lower(), port or default) == self._public
        ):
            return True
        return parts.scheme == "http" and self.own_host(where)

    def describe(self) -> str:
        """Where the dashboard is reached, for a refusal page."""
        if self._public is not None:
            scheme, host, port = self._public
            return f"{scheme}://{host}" + ("" if port == _default(scheme) else f":{port}")
        host = "127.0.0.1" if self._bound in _EVERY_INTERFACE else self._bound
        return f"http://{host}:{self.port}"
