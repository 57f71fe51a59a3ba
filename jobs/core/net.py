"""Which hosts Jobsite's outgoing requests (`http` job types, webhooks) may
reach, and how a request is sent so that it reaches only those.

Loopback, private, link-local and other non-public addresses are refused unless
`JOBS_HTTP_ALLOWED_HOSTS` lists the host name, the address, or a network holding
it. Names are checked after DNS resolution, and the request then goes to the
address that was checked, so a name cannot resolve to a public address for the
check and a private one for the connection.

A caller that follows redirects sends each hop through `send_pinned` again, so
the rules apply per hop, and builds the hop with `redirect_hop`: credentials
stay with the origin they were given for (docs/security.md, "Redirects").
"""

import ipaddress
import socket
from typing import Any, NamedTuple

import httpx
from django.conf import settings

from jobs.core.redaction import is_credential_name


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


# --- Following a redirect ------------------------------------------------------------


class Hop(NamedTuple):
    """The request that follows a redirect."""

    method: str
    url: str
    headers: dict[str, str]
    keep_body: bool


def _port_or_default(url: httpx.URL) -> int | None:
    return url.port or {"http": 80, "https": 443}.get(url.scheme)


def same_origin(url: httpx.URL, other: httpx.URL) -> bool:
    """Same scheme, host and port, as browsers and httpx compare them."""
    return url.scheme == other.scheme and url.host == other.host and _port_or_default(url) == _port_or_default(other)


def _is_https_upgrade(url: httpx.URL, location: httpx.URL) -> bool:
    # The same host, from plain HTTP on its default port to HTTPS on its
    # default port: httpx and requests keep credentials across it, as here.
    return (
        url.host == location.host
        and (url.scheme, _port_or_default(url)) == ("http", 80)
        and (location.scheme, _port_or_default(location)) == ("https", 443)
    )


def redirect_hop(
    response: httpx.Response,
    *,
    url: str,
    method: str,
    headers: dict[str, str],
    has_body: bool,
    sensitive: frozenset[str] = frozenset(),
) -> Hop:
    """The request to send after `response`, a redirect of `method url`.

    The method changes as httpx changes it (a 303 or 302 becomes GET, a 301 of
    a POST too; HEAD stays HEAD), and a request that becomes GET loses its
    body. A hop to another origin (scheme, host or port; the upgrade of the
    same host from http to https excepted) leaves out every credential-like
    header (`is_credential_name`): Authorization, Proxy-Authorization,
    Cookie, X-Api-Key and the like. A 307 or 308 that would resend a body to
    another origin is refused (RequestFailed) rather than followed: httpx and
    requests resend it, but a body may hold credentials too, and sending it
    without its body would be another request than the one defined. Headers
    named in `sensitive` (those holding a secret) are left out like credentials.
    """
    current = httpx.URL(url)
    try:
        target = current.join(response.headers["location"])
    except httpx.InvalidURL as exc:
        raise RequestFailed(f"HTTP {response.status_code} from {url} redirects to an invalid URL: {exc}") from None
    status = response.status_code
    if (status in (302, 303) and method != "HEAD") or (status == 301 and method == "POST"):
        method, has_body = "GET", False
    trusted = same_origin(current, target) or _is_https_upgrade(current, target)
    if not trusted and has_body:
        raise RequestFailed(
            f"HTTP {status} from {current} redirects to another origin ({target}) and asks for the request "
            "body again: Jobsite does not send a body on to another origin. Set the job type's url to "
            "the new location if that is where the request should go."
        )
    kept = (
        headers
        if trusted
        else {name: value for name, value in headers.items() if not is_credential_name(name) and name not in sensitive}
    )
    return Hop(method=method, url=str(target), headers=kept, keep_body=has_body)
