import factory

from jobs.models import JobType, Run


class JobTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = JobType
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"job-{n}")
    kind = JobType.Kind.TASK
    task = "jobs.builtin.echo"


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Run

    job_type = factory.SubFactory(JobTypeFactory)
    trigger = Run.Trigger.API


def job_type_form(**fields) -> dict:
    """What the admin's job type form POSTs for an echo `task` job type named 'told', with `fields` on top."""
    return {
        "name": "told",
        "kind": "task",
        "task": "jobs.builtin.echo",
        "http": "{}",
        "command": "{}",
        "params_schema": "{}",
        "default_params": "{}",
        "max_retries": 0,
        "retry_backoff_seconds": 10,
        "enabled": "on",
        "notify_on": "completion",
        "notify_emails": "",
        "webhook_url": "",
        "webhook_secret": "",
        **fields,
    }
