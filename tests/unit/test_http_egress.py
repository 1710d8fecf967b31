"""The HTTP task's checked transport, with a scripted resolver and a mock transport under it (no network)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import httpx
import pytest

from partita.actors.egress import EgressPolicy, IPAddress
from partita.actors.http_egress import CheckedTransport, EgressRefused


class Resolver:
    """Answers each lookup of a name with the next of its scripted answers (a rebinding DNS server)."""

    def __init__(self, answers: dict[str, list[list[str]]] | None = None) -> None:
        self._answers = {name: list(seq) for name, seq in (answers or {}).items()}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        if host not in self._answers or not self._answers[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in self._answers[host].pop(0)]


class Upstream:
    """The transport under the checked one: records what it was asked to connect to."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.sent: list[httpx.Request] = []
        self._handler = handler or (lambda request: httpx.Response(200, json={"ok": True}))

    def new(self) -> httpx.AsyncBaseTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.sent.append(request)
            return self._handler(request)

        return httpx.MockTransport(handle)


def client(policy: EgressPolicy, resolver: Resolver, upstream: Upstream) -> httpx.AsyncClient:
    transport = CheckedTransport(policy, resolver=resolver, transport=upstream.new)
    return httpx.AsyncClient(transport=transport, follow_redirects=True)


async def test_a_request_goes_to_the_checked_address_with_the_host_name_kept_for_host_and_tls() -> None:
    resolver, upstream = Resolver({"api.example.com": [["93.184.216.34"]]}), Upstream()
    async with client(EgressPolicy(), resolver, upstream) as http:
        reply = await http.post("https://api.example.com:8443/items?x=1", json={"a": 1})
    assert reply.status_code == 200
    (sent,) = upstream.sent
    assert str(sent.url) == "https://93.184.216.34:8443/items?x=1"
    assert sent.headers["Host"] == "api.example.com:8443"
    assert sent.extensions["sni_hostname"] == "api.example.com"
    assert sent.content == b'{"a":1}'
    assert reply.url == "https://api.example.com:8443/items?x=1"  # the caller sees its own URL


async def test_a_name_is_resolved_once_per_request_so_a_rebinding_answer_is_never_connected_to() -> None:
    resolver = Resolver({"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    upstream = Upstream()
    async with client(EgressPolicy(), resolver, upstream) as http:
        await http.get("http://rebind.example/")
        with pytest.raises(EgressRefused, match=r"127\.0\.0\.1 \(rebind\.example\) is a loopback address"):
            await http.get("http://rebind.example/")
    assert resolver.lookups == ["rebind.example", "rebind.example"]
    assert [str(r.url) for r in upstream.sent] == ["http://93.184.216.34/"]


async def test_one_refused_address_among_the_answers_refuses_the_request() -> None:
    resolver = Resolver({"mixed.example": [["93.184.216.34", "169.254.169.254"]]})
    upstream = Upstream()
    async with client(EgressPolicy(), resolver, upstream) as http:
        with pytest.raises(EgressRefused, match="the cloud metadata service"):
            await http.get("http://mixed.example/")
    assert upstream.sent == []


async def test_literal_addresses_are_checked_without_resolving_them() -> None:
    resolver, upstream = Resolver(), Upstream()
    async with client(EgressPolicy(), resolver, upstream) as http:
        for uri in ("http://127.0.0.1:8080/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::]/"):
            with pytest.raises(EgressRefused):
                await http.get(uri)
        await http.get("http://[2606:4700:4700::1111]/")
    assert resolver.lookups == []
    assert [str(r.url) for r in upstream.sent] == ["http://[2606:4700:4700::1111]/"]
    assert "sni_hostname" not in upstream.sent[0].extensions


async def test_every_redirect_hop_is_checked() -> None:
    def redirect(request: httpx.Request) -> httpx.Response:
        if request.headers["Host"] == "public.example":
            return httpx.Response(302, headers={"Location": "http://internal.example/admin"})
        return httpx.Response(200)

    resolver = Resolver({"public.example": [["93.184.216.34"]], "internal.example": [["10.0.0.7"]]})
    upstream = Upstream(redirect)
    async with client(EgressPolicy(), resolver, upstream) as http:
        with pytest.raises(EgressRefused, match=r"10\.0\.0\.7 \(internal\.example\) is a private address"):
            await http.get("http://public.example/")
    assert [r.headers["Host"] for r in upstream.sent] == ["public.example"]


async def test_a_relative_redirect_keeps_the_host_name() -> None:
    def redirect(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "/next"}) if request.url.path == "/" else httpx.Response(200)

    resolver = Resolver({"api.example": [["93.184.216.34"], ["93.184.216.35"]]})
    upstream = Upstream(redirect)
    async with client(EgressPolicy(), resolver, upstream) as http:
        reply = await http.get("https://api.example/")
    assert reply.status_code == 200
    assert [(str(r.url), r.headers["Host"]) for r in upstream.sent] == [
        ("https://93.184.216.34/", "api.example"),
        ("https://93.184.216.35/next", "api.example"),
    ]


async def test_allowed_networks_and_host_names_pass() -> None:
    resolver = Resolver({"localhost": [["127.0.0.1"]], "api.internal": [["10.0.0.5"]]})
    upstream = Upstream()
    async with client(EgressPolicy.parse(["127.0.0.0/8", "api.internal"]), resolver, upstream) as http:
        await http.get("http://localhost:9000/")
        await http.get("http://api.internal/")
    assert [str(r.url) for r in upstream.sent] == ["http://127.0.0.1:9000/", "http://10.0.0.5/"]


async def test_the_next_address_is_tried_when_connecting_to_one_fails() -> None:
    def unreachable_v6(request: httpx.Request) -> httpx.Response:
        if request.url.host == "2606:4700::1":
            raise httpx.ConnectError("Network is unreachable", request=request)
        return httpx.Response(200)

    resolver = Resolver({"dual.example": [["2606:4700::1", "93.184.216.34"]]})
    upstream = Upstream(unreachable_v6)
    async with client(EgressPolicy(), resolver, upstream) as http:
        reply = await http.get("http://dual.example/")
    assert reply.status_code == 200
    assert [r.url.host for r in upstream.sent] == ["2606:4700::1", "93.184.216.34"]


async def test_a_name_that_does_not_resolve_is_a_connect_error_not_a_refusal() -> None:
    async with client(EgressPolicy(), Resolver(), Upstream()) as http:
        with pytest.raises(httpx.ConnectError, match=r"cannot resolve 'nowhere\.example'"):
            await http.get("http://nowhere.example/")
