"""A small version of bench/load.py: concurrent triggers over HTTP, through a
live server and a real worker, every accepted run completed exactly once."""

from rest_framework.authtoken.models import Token

from bench.load import measure


def test_concurrent_triggers_are_all_accepted_and_completed_once(live_server, worker, admin_user):
    token = Token.objects.create(user=admin_user).key
    result = measure(live_server.url, token, runs=150, clients=10, timeout=90)
    outcome = {key: result[key] for key in ("accepted", "errors", "completed", "failed", "lost", "duplicated")}
    assert outcome == {"accepted": 150, "errors": {}, "completed": 150, "failed": 0, "lost": 0, "duplicated": 0}
