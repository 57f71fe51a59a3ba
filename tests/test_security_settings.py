"""The settings that guard the site: SECRET_KEY, security headers."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def run_python(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """`python ARGS` in the project, with `env` on top of this environment less SECRET_KEY and DEBUG."""
    base = {key: value for key, value in os.environ.items() if key not in ("SECRET_KEY", "DEBUG")}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_without_secret_key_even_debug_refuses_to_start_with_one_line_saying_what_to_set():
    for env in ({"DEBUG": "1"}, {}):
        done = run_python(["manage.py", "check"], DJANGO_SETTINGS_MODULE="jobsite.settings", **env)
        assert done.returncode == 1, (env, done.stdout, done.stderr)
        assert done.stderr.strip().splitlines() == [
            "manage.py: SECRET_KEY is not set: export SECRET_KEY=<a long random string> "
            "(make run writes one to .env; DEBUG=1 does not replace it)"
        ]


def test_debug_with_a_secret_key_starts():
    done = run_python(["manage.py", "check"], DJANGO_SETTINGS_MODULE="jobsite.settings", DEBUG="1", SECRET_KEY="k" * 50)
    assert done.returncode == 0, done.stderr


HEADERS = """
import django
django.setup()
from django.test import Client
response = Client(HTTP_HOST="localhost").get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
print(response.status_code, response.get("Strict-Transport-Security"))
"""


def test_behind_a_tls_proxy_browsers_are_told_to_use_https_only():
    done = run_python(["-c", HEADERS], DJANGO_SETTINGS_MODULE="tests.settings", BEHIND_TLS_PROXY="true")
    assert done.stdout.split() == ["200", "max-age=31536000"], done.stderr
    # Without a TLS proxy the request is not known to be secure, and no HSTS is sent.
    done = run_python(["-c", HEADERS], DJANGO_SETTINGS_MODULE="tests.settings", BEHIND_TLS_PROXY="false")
    assert done.stdout.split() == ["200", "None"], done.stderr


def test_every_page_gets_a_content_security_policy_without_inline_scripts(client, admin_user):
    client.force_login(admin_user)
    for url in ("/accounts/login/", "/monitor/", "/admin/", "/api/docs/", "/api/v1/"):
        policy = client.get(url)["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'self'"
        assert directives["script-src"].split()[0] == "'self'" and "'unsafe-inline'" not in directives["script-src"]
        assert "'unsafe-inline'" not in directives["style-src"]
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'self'"
