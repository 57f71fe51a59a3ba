"""Runs written `queued` by the statement that makes them ready, before their
message is published: the dispatcher's release of due runs and a workflow's
advance to its next steps (a trigger's INSERT is in tests/test_hot_path_queries.py).
The broker refusing their publish puts them back to `pending`, for the
sweeper; a process that dies before publishing them leaves them to the
lost-message check. Real objects and a real Redis, on queues no worker consumes."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from jobs.models import JobType, Run
from jobs.runs import trigger
from jobs.runs.executors import QUEUED_HEADER
from jobs.runs.lost import runs_republish_lost
from jobs.schedules import dispatcher
from jobs.workflows import steps as workflow_steps
from jobsite.celery import app
from tests.factories import JobTypeFactory
from tests.test_dispatcher_queries import due_runs, messages

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def broker(db, redis_server, settings):
    settings.CELERY_BROKER_URL = redis_server


def broker_down(*args, **kwargs):  # what kombu raises once its publish retries are spent
    raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def sweep() -> int:
    """The sweeper's pass once the runs' grace period is over: how many it published."""
    later = timezone.now() + timedelta(seconds=settings.JOBS_PENDING_REPUBLISH_SECONDS + 1)
    return trigger.runs_publish(dispatcher._republish_batch(later))


def lost_check_after(run: Run) -> int:
    """The lost-message check, run once `run` has been queued for the check's
    period (as beat sends it); how many runs it published again."""
    return runs_republish_lost(run.queued_at + timedelta(seconds=settings.JOBS_QUEUED_CHECK_SECONDS))


# --- The dispatcher's release ------------------------------------------------------


def test_released_runs_are_queued_by_their_release_and_published_with_the_queued_header(broker):
    queue = "written-queued-release"
    runs = due_runs([JobTypeFactory(queue=queue)], 3)
    assert dispatcher._release_and_publish(timezone.now()) == (3, 3)
    released = Run.objects.filter(pk__in=[run.pk for run in runs])
    # Queued at the moment of their release, by its UPDATE: no `queued` mark after the publish.
    assert {(status, queued_at == released_at) for status, queued_at, released_at in
            released.values_list("status", "queued_at", "released_at")} == {(Run.Status.QUEUED, True)}  # fmt: skip
    sent = {message["headers"]["id"]: message["headers"] for message in messages(queue)}
    assert set(sent) == {str(run.pk) for run in runs}
    assert all(headers[QUEUED_HEADER] is True for headers in sent.values())  # their start need not wait for the disk


def test_released_runs_the_broker_did_not_take_go_back_to_pending_and_the_sweeper_publishes_them(broker, monkeypatch):
    queue = "written-queued-release-outage"
    runs = due_runs([JobTypeFactory(queue=queue)], 3)
    with monkeypatch.context() as outage:
        outage.setattr(app.amqp, "send_task_message", broker_down)
        assert dispatcher._release_and_publish(timezone.now()) == (3, 0)
    released = Run.objects.filter(pk__in=[run.pk for run in runs])
    assert set(released.values_list("status", "queued_at")) == {(Run.Status.PENDING, None)}
    assert messages(queue) == []
    assert sweep() == 3
    assert sorted(message["headers"]["id"] for message in messages(queue)) == sorted(str(run.pk) for run in runs)
    assert set(released.values_list("status", flat=True)) == {Run.Status.QUEUED}


def test_a_released_run_whose_publish_never_happened_is_published_by_the_lost_check(broker):
    queue = "written-queued-release-lost"
    (run,) = due_runs([JobTypeFactory(queue=queue)], 1)
    # The release commits, and its dispatcher dies before publishing: no message anywhere.
    assert [released.pk for released in dispatcher._release_batch(timezone.now())] == [run.pk]
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED and messages(queue) == []
    assert runs_republish_lost(run.queued_at + timedelta(seconds=settings.JOBS_QUEUED_CHECK_SECONDS - 1)) == 0
    assert lost_check_after(run) == 1
    assert [message["headers"]["id"] for message in messages(queue)] == [str(run.pk)]


# --- A workflow's next steps -----------------------------------------------------


def chain(queue: str) -> JobType:
    step_type = JobTypeFactory(queue=queue)
    workflow = JobTypeFactory(kind=JobType.Kind.WORKFLOW, queue=queue)
    workflow.steps.create(name="a", job_type=step_type)
    workflow.steps.create(name="b", job_type=step_type, depends_on=["a"])
    return workflow


def start(workflow: JobType) -> tuple[Run, Run]:
    """Trigger the workflow (published once committed, if the caller runs the callbacks): it and its first step."""
    parent, _ = trigger.run_create(job_type=workflow, params={}, trigger=Run.Trigger.API)
    return parent, parent.children.get(step_name="a")


def test_a_ready_step_is_queued_by_the_advance_and_published_with_the_queued_header(
    broker, django_capture_on_commit_callbacks
):
    queue = "written-queued-step"
    with django_capture_on_commit_callbacks(execute=True):
        _, step = start(chain(queue))
    step.refresh_from_db()
    # Queued by the UPDATE that made it ready: no `queued` mark after its publish.
    assert step.status == Run.Status.QUEUED and step.queued_at == step.released_at is not None
    (message,) = messages(queue)
    assert message["headers"]["id"] == str(step.pk) and message["headers"][QUEUED_HEADER] is True


def test_a_ready_step_the_broker_did_not_take_goes_back_to_pending_and_the_sweeper_publishes_it(
    broker, monkeypatch, django_capture_on_commit_callbacks
):
    queue = "written-queued-step-outage"
    with monkeypatch.context() as outage, django_capture_on_commit_callbacks(execute=True):
        outage.setattr(app.amqp, "send_task_message", broker_down)
        _, step = start(chain(queue))
    step.refresh_from_db()
    assert (step.status, step.queued_at) == (Run.Status.PENDING, None) and messages(queue) == []
    assert sweep() == 1
    assert [message["headers"]["id"] for message in messages(queue)] == [str(step.pk)]


def test_a_ready_step_whose_publish_never_happened_is_published_by_the_lost_check(broker):
    queue = "written-queued-step-lost"
    parent, step = start(chain(queue))
    # The advance commits, and its process dies before publishing the step.
    with transaction.atomic():
        assert workflow_steps.advance(parent_id=parent.pk).ready == [step]
    step.refresh_from_db()
    assert step.status == Run.Status.QUEUED and messages(queue) == []
    assert lost_check_after(step) == 1
    assert [message["headers"]["id"] for message in messages(queue)] == [str(step.pk)]
