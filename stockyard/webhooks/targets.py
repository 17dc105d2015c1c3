"""Where a webhook may be sent: public http(s) addresses only.

A tenant names the URL, so without this an endpoint could make our servers call their own
neighbours (the database, the cloud metadata service, an admin port on loopback). The URL is
checked when it is saved, and every address it resolves to is checked again as each delivery
connects: the connection goes to the address that passed, so a name that resolves to a public
address at the check and to a private one a moment later (DNS rebinding) gets nowhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore

MAX_URL_LENGTH = 2048
# Names that mean this machine, whatever a resolver says.
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_RESOLVE_SECONDS = 2.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL or an address it resolves to is not one webhooks may reach."""


# IPv6 prefixes that carry an IPv4 address in their last 32 bits (RFC 6052 NAT64, RFC 6145
# SIIT, the deprecated IPv4-compatible form): where a translator runs, they reach that IPv4
# address, so it is that address which must be public.
_EMBEDDING_IPV4 = tuple(
    ipaddress.IPv6Network(prefix) for prefix in ("64:ff9b::/96", "::ffff:0:0:0/96", "::/96")
)
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local translators
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def is_public(address: Address) -> bool:
    """Globally routable unicast only: no loopback, private, link-local (the metadata service
    at 169.254.169.254 among them), shared, reserved or multicast address, and no IPv6 form
    that leads to one (IPv4-mapped, NAT64, SIIT, IPv4-compatible, 6to4, Teredo)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address.sixtofour is not None:
            return is_public(address.sixtofour)
        if address.teredo is not None or address in _NAT64_LOCAL:
            return False
        for prefix in _EMBEDDING_IPV4:
            if address in prefix:
                return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address not in _GLOBAL_UNICAST or address.is_site_local:
            return False
    return address.is_global and not address.is_multicast and not address.is_reserved


def host_of(url: str) -> str:
    """The URL's host, once the URL itself is shown fit: http(s), a host, no credentials
    (they would be shown to every admin who lists endpoints), no fragment."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise TargetRefused("The URL must not contain spaces or control characters.")
    if not url.isascii():
        raise TargetRefused(
            "The URL must be ASCII: write the host in its IDNA form (xn--…) and "
            "percent-encode the path."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused("The URL is malformed.") from exc
    if parts.scheme not in {"http", "https"}:
        raise TargetRefused("Only http and https URLs can receive webhooks.")
    if not parts.hostname:
        raise TargetRefused("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("Credentials in the URL are not accepted; use the signature.")
    if parts.fragment:
        raise TargetRefused("The URL must not have a fragment.")
    if port == 0:
        raise TargetRefused("The URL's port is invalid.")
    if _literal(parts.hostname) is None:
        try:
            parts.hostname.encode("idna")  # each label 1 to 63 characters, IDNA-encodable
        except UnicodeError:
            raise TargetRefused(f"{parts.hostname[:100]} is not a valid host name.") from None
    return parts.hostname


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _refuse_unless_public(host: str, addresses: Iterable[Address]) -> None:
    # The address itself is not named: it would tell a tenant what our internal names are.
    if not all(is_public(address) for address in addresses):
        raise TargetRefused(f"{host} is not a public address.")


async def resolve(host: str, port: int) -> list[Address]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=_RESOLVE_SECONDS
        )
    except UnicodeError:  # a label longer than 63 characters, or not IDNA-encodable
        raise TargetRefused(f"{host[:100]} is not a valid host name.") from None
    addresses: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL no delivery could be made to. A name that does not resolve now is let
    through (its DNS may come later); every delivery checks again."""
    host = host_of(url)
    if allow_private:
        return
    if host.lower().rstrip(".") in _LOCAL_NAMES:
        raise TargetRefused(f"{host} is this machine.")
    literal = _literal(host)
    if literal is not None:
        _refuse_unless_public(host, [literal])
        return
    try:
        addresses = await resolve(host, 443)
    except (OSError, TimeoutError):
        return
    _refuse_unless_public(host, addresses)


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving names itself and connecting only to addresses
    that pass `is_public`. TLS still verifies the certificate against the name in the URL:
    httpcore hands the original host to the TLS handshake."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        literal = _literal(host)
        try:
            addresses = [literal] if literal is not None else await resolve(host, port)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError("the host does not resolve") from exc
        local = host.lower().rstrip(".") in _LOCAL_NAMES
        if not self._allow_private and (local or not all(map(is_public, addresses))):
            # Short, and without the host: it is stored with the attempt (200 characters).
            raise TargetRefused("not a public address")
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise last_error or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("Webhooks are never sent to a local socket.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
