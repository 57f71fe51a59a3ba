"""Which hosts `http` job types may reach.

Loopback, private, link-local and other non-public addresses are refused unless
`JOBS_HTTP_ALLOWED_HOSTS` lists the host name, the address, or a network holding
it. Names are checked after DNS resolution, and the request then goes to the
address that was checked, so a name cannot resolve to a public address for the
check and a private one for the connection.
"""

import ipaddress
import socket

from django.conf import settings


class HostRefused(Exception):
    pass


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
