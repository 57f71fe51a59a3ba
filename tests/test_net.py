import pytest

from jobs.core.net import HostRefused, allowed_addresses, host_refusal_at_save


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
