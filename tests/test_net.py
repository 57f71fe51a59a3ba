import httpx
import pytest

from jobs.core.net import HostRefused, RequestFailed, allowed_addresses, host_refusal_at_save, redirect_hop
from jobs.core.redaction import is_credential_name


@pytest.fixture(autouse=True)
def nothing_allowed(settings):
    settings.JOBS_HTTP_ALLOWED_HOSTS = []


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.9.9.9",
        "10.1.2.3",
        "192.168.0.10",
        "172.16.5.5",
        "169.254.169.254",
        "::1",
        "[::1]",
        "fe80::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "localhost",
    ],
)
def test_it_refuses_loopback_private_and_link_local_hosts(host):
    with pytest.raises(HostRefused, match="JOBS_HTTP_ALLOWED_HOSTS"):
        allowed_addresses(host, 80)


def test_it_accepts_public_addresses():
    assert allowed_addresses("93.184.215.14", 443) == ["93.184.215.14"]


def test_a_listed_address_network_or_name_is_allowed(settings):
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["127.0.0.1", "10.0.0.0/8", "localhost"]
    assert allowed_addresses("127.0.0.1", 80) == ["127.0.0.1"]
    assert allowed_addresses("10.20.30.40", 80) == ["10.20.30.40"]
    assert "127.0.0.1" in allowed_addresses("localhost", 80)
    with pytest.raises(HostRefused):
        allowed_addresses("127.0.0.2", 80)


def test_names_are_checked_after_resolution(settings):
    # "localhost" is not listed, but the address it resolves to is.
    settings.JOBS_HTTP_ALLOWED_HOSTS = ["127.0.0.1", "::1"]
    assert "127.0.0.1" in allowed_addresses("localhost", 80)


def test_saving_accepts_names_that_do_not_resolve_here_but_refuses_private_ones():
    assert host_refusal_at_save("no-such-host.invalid") is None
    assert "loopback, private or link-local" in host_refusal_at_save("localhost")


# --- Redirects: what the next hop keeps ---------------------------------------------

HEADERS = {"Authorization": "Bearer t", "Cookie": "s=1", "X-Auth-Token": "t", "Accept": "text/plain"}


def hop_after(status: int, url: str, location: str, method: str = "GET", has_body: bool = False):
    response = httpx.Response(status, headers={"Location": location})
    return redirect_hop(response, url=url, method=method, headers=HEADERS, has_body=has_body)


def test_a_hop_to_another_host_port_or_scheme_drops_credential_headers():
    for location in ("http://b.example/x", "http://a.example:8080/x", "https://a.example:8443/x"):
        assert hop_after(302, "http://a.example/start", location).headers == {"Accept": "text/plain"}


def test_a_hop_within_the_origin_or_up_to_https_on_the_same_host_keeps_them():
    assert hop_after(302, "http://a.example/start", "/next").headers == HEADERS
    assert hop_after(308, "http://a.example/start", "https://a.example/start", "PUT", True) == (
        "PUT", "https://a.example/start", HEADERS, True,
    )  # fmt: skip


@pytest.mark.parametrize(
    "status, method, then",
    [(303, "POST", ("GET", False)), (302, "PUT", ("GET", False)), (301, "POST", ("GET", False)),
     (301, "PUT", ("PUT", True)), (307, "POST", ("POST", True)), (302, "HEAD", ("HEAD", False))],
)  # fmt: skip
def test_methods_change_on_a_redirect_as_httpx_changes_them(status, method, then):
    hop = hop_after(status, "http://a.example/", "/x", method, has_body=method != "HEAD")
    assert (hop.method, hop.keep_body) == then


def test_a_307_with_a_body_to_another_origin_is_refused():
    with pytest.raises(RequestFailed, match="does not send a body on to another origin"):
        hop_after(307, "http://a.example/", "http://b.example/", "POST", True)
    assert hop_after(307, "http://a.example/", "http://b.example/", "DELETE").method == "DELETE"


@pytest.mark.parametrize(
    "name", ["Authorization", "proxy-authorization", "Cookie", "X-Api-Key", "X-Auth-Token", "Private-Token",
             "X-Amz-Security-Token", "X-Hub-Signature-256", "X-Client-Secret"],
)  # fmt: skip
def test_credential_like_header_names(name):
    assert is_credential_name(name)


@pytest.mark.parametrize("name", ["Accept", "Content-Type", "User-Agent", "X-Request-Id", "If-None-Match"])
def test_ordinary_header_names(name):
    assert not is_credential_name(name)
