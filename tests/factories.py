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
