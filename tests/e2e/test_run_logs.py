"""Run logs end to end: what a task logs and prints on a real worker, and a
command's output, in the API and on the run's page, bounded, and in the
failure email."""

import json

import pytest
from django.conf import settings

from tests import commands
from tests.conftest import wait_for_notification, wait_for_run
from tests.e2e.test_execution import define
from tests.e2e.test_notifications import trigger
from tests.servers import html_part, text_part

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def logs(api, run) -> dict:
    response = api.get(f"/api/v1/runs/{run.pk}/logs/", {"page_size": 1000})
    assert response.status_code == 200, response.data
    return response.data


def test_what_a_failed_task_logged_and_printed_is_in_its_log_and_its_email_and_webhook_carry_the_tail(
    worker, api, client, admin_user, mailbox, webhook
):
    define(
        api,
        name="chatty",
        kind="task",
        task="tests.chatty",
        notify_on="failure",
        notify_emails=["ops@example.com"],
        webhook_url=webhook.url,
        webhook_secret="a-long-webhook-secret-for-tests",
    )
    run = wait_for_run(trigger(api, "chatty", {"fail": True}))
    assert run.status == "failed"
    body = logs(api, run)
    lines = [(line["level"], line["logger"], line["message"].splitlines()[0]) for line in body["results"]]
    # Not the INFO line: below the default level (JOBS_RUN_LOG_LEVEL, WARNING).
    assert lines == [
        ("WARNING", "tests.chatty", "starting with 0 lines"),
        ("STDOUT", "", "hello from print"),
        ("STDERR", "", "a warning on stderr"),
        ("ERROR", "tests.chatty", "could not go on"),
    ]
    assert "KeyError: 'missing'" in body["results"][-1]["message"]  # log.exception's traceback
    assert {line["attempt"] for line in body["results"]} == {1}
    assert (body["lines_cut"], body["next"]) == (0, None)

    wait_for_notification(run)
    [message] = mailbox.wait_for(1)
    text = text_part(message)
    assert "Last log lines:" in text
    assert "WARNING tests.chatty: starting with 0 lines" in text
    assert "STDOUT hello from print" in text
    assert "ERROR tests.chatty: could not go on" in text
    assert "could not go on" in html_part(message)
    [(_, posted)] = webhook.requests
    tail = json.loads(posted)["run"]["log_tail"]
    assert [(line["seq"], line["level"], line["message"].splitlines()[0]) for line in tail] == [
        (1, "WARNING", "starting with 0 lines"),
        (2, "STDOUT", "hello from print"),
        (3, "STDERR", "a warning on stderr"),
        (4, "ERROR", "could not go on"),
    ]

    client.force_login(admin_user)
    page = client.get(run.get_absolute_url()).content.decode()
    assert "hello from print" in page and "a warning on stderr" in page and "an info line" not in page


def test_a_runs_log_keeps_its_newest_lines_within_the_line_limit_and_says_how_many_were_cut(
    worker, api, client, admin_user
):
    define(api, name="verbose", kind="task", task="tests.chatty")
    run = wait_for_run(trigger(api, "verbose", {"lines": 1200}))
    assert run.status == "succeeded"
    body = logs(api, run)
    limit = settings.JOBS_RUN_LOG_MAX_LINES
    # 3 lines, then 1200 printed ones: the newest `limit` are kept.
    assert body["lines_cut"] == 1203 - limit
    assert len(body["results"]) == limit
    assert body["results"][-1]["message"] == "line 1200 xxxxxxxxxx"
    assert body["results"][0]["message"] == f"line {1201 - limit} xxxxxxxxxx"

    client.force_login(admin_user)
    page = client.get(run.get_absolute_url()).content.decode()
    assert f"{1203 - limit} earlier lines cut" in page
    assert "line 1200 xxxxxxxxxx" in page


def test_a_command_runs_output_is_in_its_log(worker, api):
    define(api, name="oops", kind="command", command={"argv": commands.EXIT_3})
    run = wait_for_run(trigger(api, "oops"))
    assert run.status == "failed"
    lines = [(line["level"], line["message"]) for line in logs(api, run)["results"]]
    assert lines == [("STDERR", "oops")]
