"""The HTTP task's connections: no request connects to an address the :class:`EgressPolicy` refuses.

:class:`CheckedTransport` sits under the HTTP task's ``httpx.AsyncClient``, so every request passes through it,
each redirect hop included. It resolves the request's host once, checks every address the name resolves to
(one refused address refuses the request), and sends the request to one of those addresses: the URL is
rewritten to the address, while the ``Host`` header and the TLS server name (SNI and the certificate check)
stay the host name's. The name is never resolved a second time, so a DNS server that answers a public address
for the check and an internal one for the connection (DNS rebinding) has nothing to aim at.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Final, final

import anyio
import httpx

from partita.schemas import PartitaError

from .egress import EgressPolicy, IPAddress, Refusal

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class EgressRefused(PartitaError):
    """The egress policy refused an address an HTTP task's request would connect to."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order, each once."""
    found: list[IPAddress] = []
    for family, _, _, _, sockaddr in await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family in (socket.AF_INET, socket.AF_INET6):
            address = ipaddress.ip_address(sockaddr[0])
            if address not in found:
                found.append(address)
    return found


@final
class CheckedTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport that connects only to addresses ``policy`` allows (:class:`EgressRefused`)."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: Resolver = resolve,
        transport: Callable[[], httpx.AsyncBaseTransport] = httpx.AsyncHTTPTransport,
    ) -> None:
        self._policy = policy
        self._resolve = resolver
        self._new_transport = transport
        # One connection pool per host name: pools are keyed by address, and a connection opened for one
        # name (its TLS server name) must not carry another name's requests that resolve to the same address.
        self._transports: dict[str, httpx.AsyncBaseTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host, scheme = request.url.host, request.url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"{scheme!r} is not http or https", request=request)
        addresses = await self._checked_addresses(request, host, request.url.port or _DEFAULT_PORTS[scheme])
        extensions = dict(request.extensions)
        if scheme == "https" and str(addresses[0]) != host:
            extensions["sni_hostname"] = host
        transport = self._transports.get(host)
        if transport is None:
            transport = self._transports[host] = self._new_transport()
        failure: httpx.ConnectError | None = None
        for address in addresses:  # the next one only if connecting failed: nothing has been sent
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=str(address)),
                headers=request.headers,  # Host: the name, as the original request has it
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return await transport.handle_async_request(pinned)
            except httpx.ConnectError as exc:
                failure = exc
        assert failure is not None  # _checked_addresses returns at least one address
        raise failure

    async def _checked_addresses(self, request: httpx.Request, host: str, port: int) -> list[IPAddress]:
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = await self._resolved(request, host, port)
        for address in addresses:
            refusal = self._policy.check(address, host)
            if refusal is not None:
                raise EgressRefused(refusal)
        return addresses

    async def _resolved(self, request: httpx.Request, host: str, port: int) -> list[IPAddress]:
        """The name's addresses, within the request's connect timeout (resolving is part of connecting)."""
        timeout = request.extensions.get("timeout", {}).get("connect")
        try:
            with anyio.fail_after(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"resolving {host!r} took longer than {timeout} s", request=request) from exc
        except OSError as exc:  # socket.gaierror: no such name, no resolver
            raise httpx.ConnectError(f"cannot resolve {host!r}: {exc}", request=request) from exc
        if not addresses:
            raise httpx.ConnectError(f"{host!r} resolves to no IPv4 or IPv6 address", request=request)
        return addresses

    async def aclose(self) -> None:
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            await transport.aclose()
