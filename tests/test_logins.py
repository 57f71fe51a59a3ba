"""Log-in throttling (django-axes): a username guessed at from one address is
locked for a while; people who log in, even many times, are not."""

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

LOGIN_PAGES = ["/accounts/login/", "/admin/login/", "/api/auth/login/"]


@pytest.fixture
def ada(db) -> User:
    return User.objects.create_user("ada", password="the right one", is_staff=True)


def log_in(client: Client, url: str, password: str):
    return client.post(url, {"username": "ada", "password": password, "next": "/monitor/"})


@pytest.mark.parametrize("url", LOGIN_PAGES)
def test_five_wrong_passwords_lock_the_username_from_that_address_even_for_the_right_one(ada, settings, url):
    assert settings.AXES_FAILURE_LIMIT == 5
    guesser = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(4):
        assert log_in(guesser, url, "wrong").status_code == 200  # the form again, with its error
    locked = log_in(guesser, url, "wrong")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    right = log_in(guesser, url, "the right one")
    assert right.status_code == 429 and "_auth_user_id" not in guesser.session
    # Ada, from her own address, still gets in; so does anyone else from the guesser's.
    assert log_in(Client(REMOTE_ADDR="203.0.113.5"), url, "the right one").status_code == 302
    User.objects.create_user("bo", password="bo's", is_staff=True)
    other = guesser.post(url, {"username": "bo", "password": "bo's", "next": "/monitor/"})
    assert other.status_code == 302


def test_the_lock_ends_after_the_cool_off(ada, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    guesser = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(5):
        log_in(guesser, "/accounts/login/", "wrong")
    assert log_in(guesser, "/accounts/login/", "the right one").status_code == 429
    time.sleep(1.1)
    assert log_in(guesser, "/accounts/login/", "the right one").status_code == 302


def test_logging_in_many_times_locks_nobody_and_a_success_forgets_the_failures(ada):
    client = Client()
    for _ in range(20):
        assert log_in(client, "/accounts/login/", "the right one").status_code == 302
        client.post("/accounts/logout/")
    for _ in range(3):
        for _ in range(4):
            assert log_in(client, "/accounts/login/", "wrong").status_code == 200
        assert log_in(client, "/accounts/login/", "the right one").status_code == 302
        client.post("/accounts/logout/")
