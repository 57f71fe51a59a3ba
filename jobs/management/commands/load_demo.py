from django.core.management.base import BaseCommand

from jobs.models import JobType

DEMO_JOB_TYPES = [
    {
        "name": "demo-echo",
        "description": "Returns the params it is given.",
        "kind": JobType.Kind.TASK,
        "task": "jobs.builtin.echo",
        "params_schema": {
            "type": "object",
            "properties": {"message": {"type": "string", "maxLength": 200}},
            "required": ["message"],
        },
        "default_params": {"message": "Hello from Jobsite"},
    },
    {
        "name": "demo-sleep",
        "description": "Sleeps for a number of seconds: try cancelling it while it runs.",
        "kind": JobType.Kind.TASK,
        "task": "jobs.builtin.sleep",
        "params_schema": {
            "type": "object",
            "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
        },
        "default_params": {"seconds": 10},
    },
    {
        "name": "demo-fail",
        "description": "Fails with the given message, after one retry.",
        "kind": JobType.Kind.TASK,
        "task": "jobs.builtin.fail",
        "params_schema": {"type": "object", "properties": {"message": {"type": "string"}}},
        "default_params": {"message": "This demo job always fails"},
        "max_retries": 1,
        "retry_backoff_seconds": 2,
    },
]


DEMO_WORKFLOW = {
    "name": "demo-workflow",
    "description": "Echoes, sleeps twice in parallel, then echoes what the others returned.",
    "kind": JobType.Kind.WORKFLOW,
    "params_schema": {"type": "object", "properties": {"message": {"type": "string", "maxLength": 100}}},
    "default_params": {"message": "Hello from a workflow"},
}
DEMO_STEPS = [  # name, job type, params, depends_on
    ("start", "demo-echo", {"message": "{{ params.message }}"}, []),
    ("nap-1", "demo-sleep", {"seconds": 2}, ["start"]),
    ("nap-2", "demo-sleep", {"seconds": 3}, ["start"]),
    (
        "finish",
        "demo-echo",
        {
            "message": "{{ steps.start.result.message }}, "
            "after {{ steps.nap-1.result }} s and {{ steps.nap-2.result }} s"
        },
        ["nap-1", "nap-2"],
    ),
]


class Command(BaseCommand):
    help = "Create the demo job types that are missing; never changes existing ones."

    def handle(self, *args, **options):
        created = [
            spec["name"]
            for spec in DEMO_JOB_TYPES
            if JobType.objects.get_or_create(name=spec["name"], defaults=spec)[1]
        ]
        workflow, made = JobType.objects.get_or_create(name=DEMO_WORKFLOW["name"], defaults=DEMO_WORKFLOW)
        if made:
            for position, (name, job_type, params, depends_on) in enumerate(DEMO_STEPS):
                workflow.steps.create(
                    name=name,
                    job_type=JobType.objects.get(name=job_type),
                    params=params,
                    depends_on=depends_on,
                    position=position,
                )
            created.append(workflow.name)
        self.stdout.write(f"Demo job types created: {', '.join(created)}" if created else "Demo job types present.")
