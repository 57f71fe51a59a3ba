"""Which hosts Jobsite's outgoing requests (`http` job types, webhooks) may
reach, and how a request is sent so that it reaches only those.

Loopback, private, link-local and other non-public addresses are refused unless
`JOBS_HTTP_ALLOWED_HOSTS` lists the host name, the address, or a network holding
it. Names are checked after DNS resolution, and the request then goes to the
address that was checked, so a name cannot resolve to a public address for the
check and a private one for the connection.
"""

import ipaddress
import socket
from typing import Any, NamedTuple

import httpx
from django.conf import settings


class HostRefused(Exception):
    pass


class RequestFailed(Exception):
    """The request was refused by the host rules or could not be completed."""


def _allowed_entries() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names, networks = set(), []
    for entry in settings.JOBS_HTTP_ALLOWED_HOSTS:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.lower().rstrip("."))
    return names, networks


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def allowed_addresses(host: str, port: int) -> list[str]:
    """The addresses of `host` that a request may connect to; HostRefused if none may."""
    host = host.lower().rstrip(".")
    names, networks = _allowed_entries()
    literal = _literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise HostRefused(f"Cannot resolve host '{host}': {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if host in names:
        return [str(address) for address in addresses]
    refused = [a for a in addresses if not _is_public(a) and not any(a in net for net in networks)]
    if refused:
        raise HostRefused(
            f"Host '{host}' resolves to {refused[0]}, a loopback, private or link-local address; "
            "add it to JOBS_HTTP_ALLOWED_HOSTS to allow it"
        )
    return [str(address) for address in addresses]


def host_refusal_at_save(host: str) -> str | None:
    """Why a job type may not target `host`, judged when it is saved.

    A name that does not resolve from the web process is accepted here (workers
    may see other DNS); it is checked again, for real, on every request.
    """
    try:
        allowed_addresses(host, 80)
    except HostRefused as exc:
        if str(exc).startswith("Cannot resolve"):
            return None
        return str(exc)
    return None


def url_problem(url: Any) -> str | None:
    """What is wrong with `url` as the target of an outgoing request, judged at save time."""
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        return f"give an absolute http:// or https:// URL, not {url!r}."
    refusal = host_refusal_at_save(parsed.host)
    return f"{refusal}." if refusal else None


class PinnedResponse(NamedTuple):
    response: httpx.Response
    body: bytes
    truncated: bool


def send_pinned(
    client: httpx.Client, method: str, url: str, *, headers: dict[str, str], max_body_bytes: int, **content: Any
) -> PinnedResponse:
    """Send one request to an address of the URL's host that the rules allow.

    `content` is httpx's `json`, `params` or `content`. Redirects are not
    followed: a caller that follows them sends each hop through here again.
    The response body is read up to `max_body_bytes`.
    """
    target = httpx.URL(url)
    if target.scheme not in ("http", "https"):
        raise RequestFailed(f"Refusing to follow {url}: only http and https are allowed")
    try:
        address = allowed_addresses(target.host, target.port or (443 if target.scheme == "https" else 80))[0]
    except HostRefused as exc:
        raise RequestFailed(str(exc)) from None
    request = client.build_request(
        method,
        target.copy_with(host=address),
        headers={**headers, "Host": target.netloc.decode("ascii")},
        extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
        **content,
    )
    try:
        response = client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise RequestFailed(f"{type(exc).__name__} calling {url}: {exc}") from None
    body, truncated = bytearray(), False
    try:
        for chunk in response.iter_bytes():
            body.extend(chunk)
            if len(body) > max_body_bytes:
                del body[max_body_bytes:]
                truncated = True
                break
    except httpx.HTTPError as exc:
        raise RequestFailed(f"{type(exc).__name__} reading the answer of {url}: {exc}") from None
    finally:
        response.close()
    return PinnedResponse(response, bytes(body), truncated)
