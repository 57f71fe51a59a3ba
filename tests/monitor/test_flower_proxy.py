"""/flower/ through the web process, against a real Flower with basic auth."""

import io
import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from jobs.core.roles import VIEWERS
from jobs.models import Run
from jobs.runs.trigger import run_create
from tests.conftest import ROOT, answered_once_back, free_port, wait_for_ping, wait_for_run
from tests.factories import JobTypeFactory


def test_flower_itself_refuses_requests_without_its_credentials(flower):
    assert httpx.get(f"{flower.url}/", timeout=5).status_code == 401
    assert httpx.get(f"{flower.url}/", auth=("flower", "wrong"), timeout=5).status_code == 401


def test_staff_see_flowers_main_pages_through_the_proxy(flower, staff_client):
    dashboard = staff_client.get("/flower/")
    assert dashboard.status_code == 200
    assert dashboard["Content-Type"].startswith("text/html")
    body = dashboard.content.decode()
    assert "<title>Workers · Flower</title>" in body
    # Flower's own links stay under /flower/, so they come back through the proxy.
    assert 'href="/flower/tasks"' in body
    assert dashboard["X-Frame-Options"] == "SAMEORIGIN"

    tasks = staff_client.get("/flower/tasks")
    assert tasks.status_code == 200 and "<title>Tasks · Flower</title>" in tasks.content.decode()
    script = staff_client.get("/flower/static/js/flower.js")
    assert script.status_code == 200
    assert b"url_prefix" in script.content
    api = staff_client.get("/flower/api/workers", {"refresh": "false"})
    assert api.status_code == 200 and api["Content-Type"].startswith("application/json")


def test_flower_shows_a_run_that_a_worker_executed(flower, worker, staff_client):
    run, _ = run_create(job_type=JobTypeFactory(name="echo"), params={"hello": "flower"}, trigger=Run.Trigger.API)
    assert wait_for_run(run).status == "succeeded"
    page = staff_client.get(f"/flower/task/{run.pk}")
    # Flower learns about tasks from events, which may lag a moment behind the database.
    for _ in range(50):
        if page.status_code == 200:
            break
        page = staff_client.get(f"/flower/task/{run.pk}")
    assert page.status_code == 200
    body = page.content.decode()
    assert str(run.pk) in body and "jobs.builtin.echo" in body
    # The run page links there.
    assert f'href="/flower/task/{run.pk}"' in staff_client.get(f"/monitor/runs/{run.pk}/").content.decode()


def test_flower_pages_get_the_script_that_sends_djangos_csrf_token(flower, staff_client):
    body = staff_client.get("/flower/").content.decode()
    assert '<script src="/static/jobs/flower-csrf.js" data-cookie="csrftoken"></script></body>' in body
    assert "csrftoken" in staff_client.cookies


def test_posts_to_flower_need_djangos_csrf_token(flower, admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    client.get("/flower/")  # sets the CSRF cookie, as a browser would have it
    url = "/flower/api/task/revoke/00000000-0000-4000-8000-000000000000"
    token = client.cookies["csrftoken"].value
    assert client.post(url).status_code == 403
    assert client.post(url, {"terminate": "false"}).status_code == 403
    for body in ({}, {"terminate": "false"}):  # multipart, as Django's test client sends it
        response = client.post(url, body, HTTP_X_CSRFTOKEN=token)
        assert response.status_code == 200
        assert response.json() == {"message": "Revoked '00000000-0000-4000-8000-000000000000'"}
    # A form-encoded body, as Flower's jQuery sends it, reaches Flower as it was sent.
    url = "/flower/api/task/rate-limit/jobs.builtin.echo"
    form = "application/x-www-form-urlencoded"
    response = client.post(url, "", content_type=form, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 400 and b"Missing argument workername" in response.content
    body = "workername=nobody%40nowhere&ratelimit=1%2Fm"
    response = client.post(url, body, content_type=form, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 404 and b"Unknown worker 'nobody@nowhere'" in response.content


def test_without_flower_the_proxy_says_so(staff_client, settings):
    settings.FLOWER_URL = f"http://127.0.0.1:{free_port()}/flower"
    response = staff_client.get("/flower/")
    assert response.status_code == 502
    body = response.content.decode()
    assert "Flower is unavailable" in body and settings.FLOWER_URL in body


def test_with_the_wrong_credentials_the_proxy_says_so(flower, staff_client, settings):
    settings.FLOWER_BASIC_AUTH = "flower:not-the-password"
    response = staff_client.get("/flower/")
    assert response.status_code == 502
    assert "Flower refused the credentials in FLOWER_BASIC_AUTH." in response.content.decode()


def test_the_session_cookie_never_reaches_flower(flower, staff_client):
    # Flower echoes nothing back, so look at what the proxy would send.
    from django.test import RequestFactory

    from jobs.monitor.flower import _upstream_headers

    request = RequestFactory().get("/flower/", HTTP_COOKIE="sessionid=secret; csrftoken=t", HTTP_ACCEPT="text/html")
    headers = _upstream_headers(request)
    assert "Cookie" not in headers and "cookie" not in {name.lower() for name in headers}
    assert headers["Accept"] == "text/html"
    assert headers["Authorization"].startswith("Basic ")


def test_redirects_to_flowers_own_address_come_back_through_the_proxy(settings):
    from jobs.monitor.flower import _local_location

    settings.FLOWER_URL = "http://127.0.0.1:5555/flower"
    assert _local_location("http://127.0.0.1:5555/flower/tasks?state=FAILURE") == "/flower/tasks?state=FAILURE"
    assert _local_location("/flower/login") == "/flower/login"
    assert _local_location("https://elsewhere.example/x") == "https://elsewhere.example/x"


# --- What Flower shows, and what it may not be asked ------------------------------------------

SECRETS = {
    "EMAIL_URL": "smtp://mailer:mail-secret-4f2a@127.0.0.1:2525",
    "FLOWER_BASIC_AUTH": "flower:flower-secret-9c1d",
    "SECRET_KEY": "django-secret-7e3b",
}


@pytest.fixture
def staff_viewer(db) -> Client:
    """A Viewer as setup_roles makes one: staff, so Flower's pages are open to them."""
    User.objects.create_user("vera", password="pw")
    call_command("setup_roles", "--add", "vera", VIEWERS, stdout=io.StringIO())
    client = Client()
    client.force_login(User.objects.get(username="vera"))
    return client


def test_a_viewer_sees_the_workers_config_in_flower_without_any_secret(flower, start_worker, staff_viewer):
    worker = start_worker(1, "flower-config", env=SECRETS)
    response = staff_viewer.get("/flower/api/workers", {"refresh": "1", "workername": worker.hostname})
    assert response.status_code == 200
    page = staff_viewer.get(f"/flower/worker/{worker.hostname}")
    assert page.status_code == 200
    for shown in (response.content.decode(), page.content.decode()):
        for secret in ("mail-secret-4f2a", "flower-secret-9c1d", "django-secret-7e3b"):
            assert secret not in shown
    conf = response.json()[worker.hostname]["conf"]
    assert not {"EMAIL_URL", "REDIS_URL", "FLOWER_BASIC_AUTH", "SECRET_KEY", "DATABASES"} & set(conf)
    # Celery's own settings are all there is, under Celery's names, on the API and the page.
    assert conf["task_default_queue"] == "celery" and "broker_url" in conf
    assert "task_default_queue" in page.content.decode()


def test_after_redis_restarted_flowers_page_of_a_worker_shows_it_on_the_first_visit(
    flower, broker_outage, celery_worker, start_worker, staff_client
):
    # Flower holds broker connections from before the restarts. Pooled, they
    # failed the next inspections made through them, and a worker's page
    # answered 404, "Unable to get stats" (seen after two quick restarts).
    # Flower runs with CELERY_BROKER_POOL_LIMIT=0: a connection per inspection.
    before = staff_client.get(f"/flower/worker/{celery_worker.hostname}")  # its 8 inspections, at once
    assert before.status_code == 200
    for _ in range(2):
        broker_outage.stop()
        broker_outage.start()
    worker = answered_once_back(lambda: start_worker(1, "flower-after-restart"))
    page = staff_client.get(f"/flower/worker/{worker.hostname}")
    assert page.status_code == 200, page.content[:300]
    assert "task_default_queue" in page.content.decode()
    # The session's worker rides out the restarts too, for the tests after this one.
    answered_once_back(lambda: wait_for_ping(celery_worker, timeout=120))


def test_the_config_a_worker_answers_with_masks_the_broker_password():
    """`celery inspect conf`, which Flower asks, as a worker answers it (without a
    Redis that takes this password: the answer is built from the settings alone)."""
    script = (
        "import django, json; django.setup();"
        "from types import SimpleNamespace; from celery.worker.control import conf; from jobsite.celery import app;"
        "print(json.dumps(conf(SimpleNamespace(app=app))))"
    )
    env = {**os.environ, **SECRETS, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env["REDIS_URL"] = "redis://:broker-secret-5d8e@127.0.0.1:6399/0"
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "broker-secret-5d8e" not in done.stdout and "mail-secret-4f2a" not in done.stdout
    assert "flower-secret-9c1d" not in done.stdout and "django-secret-7e3b" not in done.stdout
    assert json.loads(done.stdout)["broker_url"] == "redis://:********@127.0.0.1:6399/0"


def test_flowers_calls_that_wait_for_a_task_are_refused_at_once(flower, admin_user):
    client = Client()
    client.force_login(admin_user)
    task_id = "00000000-0000-4000-8000-000000000000"
    started = time.monotonic()
    waiting = client.get(f"/flower/api/task/result/{task_id}", {"timeout": "30"})
    assert waiting.status_code == 400
    assert "ask without timeout" in waiting.content.decode()
    applying = client.post("/flower/api/task/apply/tests.count_calls", "{}", content_type="application/json")
    assert applying.status_code == 400 and "api/task/async-apply" in applying.content.decode()
    assert time.monotonic() - started < 5  # Flower was never asked to wait


def test_the_unavailable_page_shows_flowers_address_without_its_credentials(staff_client, settings):
    settings.FLOWER_URL = f"http://proxy:url-secret-2b7c@127.0.0.1:{free_port()}/flower"
    response = staff_client.get("/flower/")
    assert response.status_code == 502
    body = response.content.decode()
    assert "url-secret-2b7c" not in body and "http://127.0.0.1:" in body
