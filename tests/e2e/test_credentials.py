"""Masked credentials end to end: a job type read back masked and saved again as
read still sends its stored credentials from a real worker, to a local server
(its headers, its URL's token) and to its webhook (the full URL, with its
user:password); what the run then shows of them is masked."""

import base64

from django.urls import reverse
from django_celery_results.models import TaskResult

from jobs.core.redaction import MASK
from jobs.models import Run
from tests.conftest import wait_for_notification, wait_for_run

SECRETS = ("s3cr3t-bearer", "k3y-value", "qu3ry-token", "us3r-pass", "h00k-path", "h00k-sig")


def trigger(api, name: str) -> Run:
    response = api.post(f"/api/v1/job-types/{name}/run/", {"params": {}}, format="json")
    assert response.status_code == 201, response.data
    return Run.objects.get(pk=response.data["id"])


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, (where, secret)


def test_a_job_type_saved_back_masked_still_sends_its_credentials_and_its_run_shows_them_masked(
    worker, api, webhook, client, admin_user
):
    base = webhook.url.removesuffix("/hooks/jobsite")
    body = {
        "name": "fetch",
        "kind": "http",
        "http": {
            "method": "GET",
            "url": f"{base}/items?token=qu3ry-token&page=2",
            "headers": {"Authorization": "Bearer s3cr3t-bearer", "X-Api-Key": "k3y-value", "Accept": "text/plain"},
        },
        "notify_on": "completion",
        "webhook_url": f"{base.replace('://', '://robot:us3r-pass@')}/hooks/h00k-path?sig=h00k-sig",
        "webhook_secret": "a-long-webhook-secret-for-tests",
    }
    assert api.post("/api/v1/job-types/", body, format="json").status_code == 201
    read = api.get("/api/v1/job-types/fetch/").json()
    assert read["http"]["headers"]["Authorization"] == MASK
    assert api.put("/api/v1/job-types/fetch/", read, format="json").status_code == 200

    run = wait_for_run(trigger(api, "fetch"))
    assert run.status == "succeeded", run.error
    assert wait_for_notification(run).notify_status == "sent"

    # The worker sent the stored values...
    assert webhook.paths == ["/items?token=qu3ry-token&page=2", "/hooks/h00k-path?sig=h00k-sig"]
    (job_headers, _), (hook_headers, _) = webhook.requests
    assert (job_headers["Authorization"], job_headers["X-Api-Key"]) == ("Bearer s3cr3t-bearer", "k3y-value")
    assert hook_headers["Authorization"] == "Basic " + base64.b64encode(b"robot:us3r-pass").decode()
    # ...and the run shows them masked, wherever it is read.
    assert run.result["url"] == f"{base}/items?token={MASK}&page=2"
    client.force_login(admin_user)
    shown = {
        "api": api.get(f"/api/v1/runs/{run.pk}/").content.decode(),
        "run page": client.get(reverse("monitor:run", args=[run.pk])).content.decode(),
        "admin run page": client.get(reverse("admin:jobs_run_change", args=[run.pk])).content.decode(),
        "task result": str(TaskResult.objects.get(task_id=str(run.pk)).result),
    }
    for where, text in shown.items():
        assert_no_secret(where, text)
    assert f"items?token={MASK}" in shown["api"]


def test_an_http_runs_error_shows_its_url_masked(worker, api, webhook):
    webhook.status = 500
    base = webhook.url.removesuffix("/hooks/jobsite")
    body = {"name": "broken", "kind": "http", "http": {"url": f"{base}/items?api_key=k3y-value&page=2"}}
    assert api.post("/api/v1/job-types/", body, format="json").status_code == 201
    run = wait_for_run(trigger(api, "broken"))
    assert run.status == "failed"
    assert webhook.paths == ["/items?api_key=k3y-value&page=2"]
    assert run.error.startswith(f"HTTP 500 from {base}/items?api_key={MASK}&page=2, expected ")
    assert_no_secret("api", api.get(f"/api/v1/runs/{run.pk}/").content.decode())
