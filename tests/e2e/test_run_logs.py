"""Run logs end to end: what a task logs and prints on a real worker, and a
command's output, in the API, bounded, and in the failure email."""

from django.conf import settings

from jobs.models import RunLogLine
from tests import commands
from tests.conftest import wait_for_notification, wait_for_run
from tests.e2e.test_execution import define
from tests.e2e.test_notifications import trigger
from tests.servers import html_part, text_part


def logs(api, run) -> dict:
    response = api.get(f"/api/v1/runs/{run.pk}/logs/", {"page_size": 1000})
    assert response.status_code == 200, response.data
    return response.data


def test_what_a_task_logs_and_prints_is_in_its_runs_log_and_the_failure_email_has_the_tail(worker, api, mailbox):
    define(api, name="chatty", kind="task", task="tests.chatty", notify_on="failure", notify_emails=["ops@example.com"])
    run = wait_for_run(trigger(api, "chatty", {"fail": True}))
    assert run.status == "failed"
    lines = [(line.level, line.logger, line.message.splitlines()[0], line.attempt) for line in run.log_lines.all()]
    assert lines == [
        ("WARNING", "tests.chatty", "starting with 0 lines", 1),
        ("STDOUT", "", "hello from print", 1),
        ("STDERR", "", "a warning on stderr", 1),
        ("ERROR", "tests.chatty", "could not go on", 1),
    ]
