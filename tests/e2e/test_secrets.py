"""One test greps them all: a secret used by an `http` job type (URL, header,
body), a `command`'s env and a webhook URL reaches, from a real worker, the
server, the command and the webhook receiver; and its value is in nothing that
can be read back: API answers, pages, the admin, the export, the audit log,
runs' results and errors, task results, the worker's log, emails and webhook
bodies."""

import json
import uuid
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.urls import reverse
from django_celery_results.models import TaskResult

from jobs.core.redaction import MASK
from jobs.models import JobType, Run, RunLogLine, Secret
from tests import commands
from tests.conftest import wait_for_notification, wait_for_run
from tests.servers import HttpRecorder

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def server():
    recorder = HttpRecorder()
    yield recorder
    recorder.close()


def trigger(api, name: str) -> Run:
    response = api.post(f"/api/v1/job-types/{name}/run/", {"params": {}}, format="json")
    assert response.status_code == 201, response.data
    return Run.objects.get(pk=response.data["id"])


def test_a_secret_reaches_what_it_is_for_and_nothing_read_back_shows_it(
    worker, api, server, webhook, mailbox, client, admin_user
):
    value = f"gr3p-me-{uuid.uuid4().hex}"
    ref = "{{ secrets.API_TOKEN }}"
    response = api.post("/api/v1/secrets/", {"name": "API_TOKEN", "value": value}, format="json")
    assert response.status_code == 201, response.data
    notify = {
        "notify_on": "completion",
        "notify_emails": ["ops@example.com"],
        "webhook_url": webhook.url + "/" + ref,
        "webhook_secret": "a-long-webhook-secret-for-tests",
    }
    job_types = [
        {
            "name": "call",
            "kind": "http",
            # The recorder answers with the path it was called on: the value comes back in the result.
            "http": {
                "method": "POST",
                "url": f"{server.origin}/items?token={ref}",
                "headers": {"Authorization": f"Bearer {ref}", "X-Plain": ref},
                "body": {"token": ref},
            },
            **notify,
        },
        {
            "name": "call-fails",
            "kind": "http",
            # 200 where 201 is expected: the error quotes the answer, which holds the value.
            "http": {"url": f"{server.origin}/fail/{ref}", "expected_status": [201]},
            **notify,
        },
        {
            "name": "cmd",
            "kind": "command",
            "command": {"argv": commands.PRINT_TOKEN, "env": {"API_TOKEN": ref}},
            **notify,
        },
    ]
    for body in job_types:
        response = api.post("/api/v1/job-types/", body, format="json")
        assert response.status_code == 201, response.data

    runs = {name: wait_for_run(trigger(api, name)) for name in ("call", "call-fails", "cmd")}
    for run in runs.values():
        assert wait_for_notification(run).notify_status == "sent", run.notify_outcome
    mailbox.wait_for(3)

    # What the secret is for got the real value...
    (_, fail_path, _, _), (method, path, headers, body) = sorted(server.requests, key=lambda r: r[1])
    assert (method, path) == ("POST", f"/items?token={value}")
    assert (headers["Authorization"], headers["X-Plain"]) == (f"Bearer {value}", value)
    assert json.loads(body) == {"token": value}
    assert fail_path == f"/fail/{value}"
    assert webhook.paths == [f"/hooks/jobsite/{value}"] * 3
    # ...and each run shows where it was, masked.
    assert runs["call"].status == "succeeded", runs["call"].error
    assert runs["call"].result["json"] == {"method": "POST", "path": f"/items?token={MASK}"}
    assert runs["call-fails"].status == "failed"
    assert f"/fail/{MASK}" in runs["call-fails"].error
    assert runs["cmd"].status == "succeeded", runs["cmd"].error
    assert runs["cmd"].result["stdout"] == f"length={len(value)} token={MASK}\n"
    assert runs["cmd"].result["stderr"] == f"token={MASK}\n"
    # The command's output is in its log too (jobs/runs/logs.py), masked the same way.
    logged = RunLogLine.objects.filter(run=runs["cmd"]).order_by("seq")
    assert sorted((line.level, line.message) for line in logged) == [
        ("STDERR", f"token={MASK}"),
        ("STDOUT", f"length={len(value)} token={MASK}"),
    ]

    # Everything that can be read back, collected.
    client.force_login(admin_user)
    secret = Secret.objects.get()
    seen: dict[str, str] = {}
    for url in [
        "/api/v1/secrets/",
        "/api/v1/secrets/API_TOKEN/",
        "/api/v1/job-types/",
        *(f"/api/v1/job-types/{body['name']}/" for body in job_types),
        *(f"/api/v1/job-types/{body['name']}/revisions/" for body in job_types),
        "/api/v1/runs/",
        *(f"/api/v1/runs/{run.pk}/" for run in runs.values()),
        *(f"/api/v1/runs/{run.pk}/logs/" for run in runs.values()),
    ]:
        answer = api.get(url)
        assert answer.status_code == 200, url
        seen[url] = answer.content.decode()
    pages = [
        reverse("monitor:dashboard"),
        reverse("monitor:runs"),
        reverse("monitor:audit"),
        reverse("monitor:job-types"),
        *(reverse("monitor:run", args=[run.pk]) for run in runs.values()),
        *(reverse("monitor:job-type", args=[name]) for name in ("call", "call-fails", "cmd")),
        *(reverse("monitor:job-type-history", args=[name]) for name in ("call", "call-fails", "cmd")),
        reverse("admin:jobs_secret_changelist"),
        reverse("admin:jobs_secret_change", args=[secret.pk]),
        reverse("admin:jobs_secret_history", args=[secret.pk]),
        *(reverse("admin:jobs_run_change", args=[run.pk]) for run in runs.values()),
        *(reverse("admin:jobs_jobtype_change", args=[job_type.pk]) for job_type in JobType.objects.all()),
    ]
    for url in pages:
        page = client.get(url)
        assert page.status_code == 200, url
        seen[url] = page.content.decode()
    export = StringIO()
    call_command("export_job_types", stdout=export)
    seen["export_job_types"] = export.getvalue()
    assert ref in seen["export_job_types"]  # the reference, not the value
    seen["audit log"] = "\n".join(str(entry.__dict__) for entry in LogEntry.objects.all())
    for run in Run.objects.all():
        seen[f"run {run.pk}"] = json.dumps(
            [run.result, run.error, run.traceback, run.notify_outcome, run.params], default=str
        )
    for result in TaskResult.objects.all():
        seen[f"task result {result.task_id}"] = json.dumps(
            [result.result, result.traceback, result.task_args, result.task_kwargs, result.meta]
        )
    for number, message in enumerate(mailbox.messages):
        seen[f"email {number}"] = message.as_string()
    for number, (_, body) in enumerate(webhook.requests):
        seen[f"webhook body {number}"] = body.decode()
    seen["worker log"] = worker.log.read_text(errors="replace")

    assert len(seen) > 30
    leaks = [where for where, text in seen.items() if value in text]
    assert not leaks, f"the secret's value is in: {leaks}"
