"""Where a webhook may point: http(s) only, and never inside the server's own networks.

A webhook makes the server send requests to an address an administrator typed, so an
unchecked URL would let anyone holding that right probe or call services only the server
can reach (SSRF: the cloud metadata address, a database's HTTP port, localhost). Every
address the host name resolves to must therefore be public, unless it lies in a network
that ``TRELLIS_WEBHOOK_ALLOWED_NETWORKS`` names (an ERP on the private network; tests
allow loopback). The check runs when a webhook is saved *and* before each delivery, since
what a name resolves to can change after it was saved, and a delivery connects to an
address the check returned (``delivery._post``), never resolving the name again. Redirects
are not followed (the redirected-to address would be unchecked).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from trellis.exceptions import TargetRefused
from trellis.platform.messages import N_

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL = 2000


def allowed_networks(setting: str | Iterable[str] | None) -> tuple[Network, ...]:
    """``TRELLIS_WEBHOOK_ALLOWED_NETWORKS`` (comma-separated CIDRs) as networks."""
    if not setting:
        return ()
    items = setting.split(",") if isinstance(setting, str) else list(setting)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


def check_url(url: str) -> tuple[str, int]:
    """The host and port of an http(s) ``url``; ``TargetRefused`` for anything else."""
    if len(url) > MAX_URL:
        raise _refused(N_("the URL is longer than %(max)s characters", max=MAX_URL))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refused(N_("not a valid URL")) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refused(N_("only http:// and https:// URLs can receive webhooks"))
    if parts.username or parts.password:
        raise _refused(N_("a webhook URL cannot carry a user name or password"))
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_target(url: str, allowed: tuple[Network, ...]) -> list[Address]:
    """The addresses ``url``'s host resolves to, each checked; ``TargetRefused`` when the URL
    is not http(s), the name does not resolve, or an address is private and not allowed."""
    host, port = check_url(url)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise _refused(N_("the host %(host)s cannot be resolved", host=host)) from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in found]
    for address in addresses:
        if not _public(address) and not any(address in network for network in allowed):
            raise _refused(
                N_(
                    "%(host)s resolves to %(address)s, a private or local address",
                    host=host,
                    address=str(address),
                )
            )
    return addresses


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


def _refused(message: str) -> TargetRefused:
    return TargetRefused(message, [{"field": "url", "message": message}])
