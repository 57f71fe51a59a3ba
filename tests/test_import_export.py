"""manage.py import_workflows (celery-director files), export_job_types and import_job_types."""

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from jobs.core import yaml_lines
from jobs.importexport import director
from jobs.models import JobType, Schedule, WorkflowStep
from tests.factories import JobTypeFactory

FIXTURES = Path(__file__).parent / "fixtures" / "director"
WORKFLOWS_YML = FIXTURES / "workflows.yml"


def run_command(name, *args) -> tuple[str, str]:
    from io import StringIO

    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def steps_of(name: str) -> list[tuple[str, str, list[str]]]:
    return list(JobType.objects.get(name=name).steps.values_list("name", "job_type__name", "depends_on"))


def test_it_imports_chains_groups_queues_hooks_and_schemas(db):
    out, _ = run_command("import_workflows", str(WORKFLOWS_YML))
    assert out.startswith("Job types: created 9 (")
    assert steps_of("shop-etl") == [
        ("extract", "extract", []),
        ("transform-sum", "transform-sum", ["extract"]),
        ("transform-count", "transform-count", ["extract"]),
        ("load", "load", ["transform-sum", "transform-count"]),
        ("on-success", "notify-success", ["load"]),
    ]
    etl = JobType.objects.get(name="shop-etl")
    assert etl.queue == "workflow-tests"
    assert etl.params_schema["required"] == ["rows"]
    assert etl.on_failure.name == "notify-failure-on-workflow-tests"
    assert (etl.on_failure.task, etl.on_failure.queue) == ("NOTIFY_FAILURE", "workflow-tests")
    assert JobType.objects.get(name="extract").task == "EXTRACT"
    # Its steps are called as celery-director calls them (payload, workflow_id, upstream results), by that name.
    assert (etl.step_args, etl.director_name) == ("director", "shop.ETL")
    assert WorkflowStep.objects.get(workflow__name="shop-etl", name="extract").params == {}
    # A task given a queue of its own in one workflow is a job type of its own.
    assert steps_of("shop-nightly") == [("extract", "extract", []), ("load", "load-on-reports", ["extract"])]
    assert JobType.objects.get(name="load-on-reports").queue == "reports"
    assert JobType.objects.get(name="shop-nightly").queue == "workflow-tests"
    assert "Schedules: created 2 (shop-etl-periodic, shop-nightly-periodic)" in out
    etl_periodic = Schedule.objects.get(name="shop-etl-periodic")
    assert (etl_periodic.job_type.name, etl_periodic.cron, etl_periodic.params) == (
        "shop-etl",
        "0 */3 * * *",
        {"rows": 3},
    )
    assert etl_periodic.next_run_at is not None
    assert Schedule.objects.get(name="shop-nightly-periodic").interval_seconds == 60


def test_importing_the_same_file_twice_changes_nothing(db):
    run_command("import_workflows", str(WORKFLOWS_YML))
    before = list(JobType.objects.values_list("name", "updated_at"))
    steps_before = list(WorkflowStep.objects.values_list("pk", "name"))
    schedules_before = list(Schedule.objects.values_list("name", "updated_at", "next_run_at"))
    out, _ = run_command("import_workflows", str(WORKFLOWS_YML))
    assert out.strip().splitlines() == [
        "Job types: created 0; updated 0; unchanged 9.",
        "Schedules: created 0; updated 0; unchanged 2.",
    ]
    assert list(Schedule.objects.values_list("name", "updated_at", "next_run_at")) == schedules_before
    assert list(JobType.objects.values_list("name", "updated_at")) == before
    assert list(WorkflowStep.objects.values_list("pk", "name")) == steps_before


def test_importing_again_switches_a_workflow_imported_before_the_calling_convention(db):
    run_command("import_workflows", str(WORKFLOWS_YML))
    # As an earlier Jobsite left it: the payload through a placeholder, no convention, no name.
    JobType.objects.filter(name="shop-nightly").update(step_args="params", director_name="")
    WorkflowStep.objects.filter(workflow__name="shop-nightly").update(params={"payload": "{{ params }}"})
    out, _ = run_command("import_workflows", str(WORKFLOWS_YML))
    assert out.startswith("Job types: created 0; updated 1 (shop-nightly); unchanged 8.")
    nightly = JobType.objects.get(name="shop-nightly")
    assert (nightly.step_args, nightly.director_name) == ("director", "shop.NIGHTLY")
    assert list(nightly.steps.values_list("params", flat=True)) == [{}, {}]


def test_periodic_entries_become_schedule_definitions(db):
    imported = director.read(yaml_lines.load(WORKFLOWS_YML.read_text()), schemas_dir=FIXTURES / "schemas")
    assert imported.schedules == [
        {
            "name": "shop-etl-periodic",
            "job_type": "shop-etl",
            "params": {"rows": 3},
            "enabled": True,
            "cron": "0 */3 * * *",
            "timezone": "UTC",
        },
        {
            "name": "shop-nightly-periodic",
            "job_type": "shop-nightly",
            "params": {},
            "enabled": True,
            "interval_seconds": 60,
        },
    ]


GOOD = """\
shop.ETL:
  tasks:
    - EXTRACT
    - LOAD
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "shop.ETL:\n  taks:\n    - EXTRACT\n",
            ":2: shop.ETL: unknown key 'taks'; celery-director workflows use tasks,",
        ),
        ("shop.ETL:\n  tasks: [EXTRACT\n", ":3: not valid YAML"),
        ("shop.ETL:\n  tasks:\n    - EXTRACT\n    - GHOST_TASK\n", ":4: job type 'ghost-task': task: Unknown task"),
        (
            "shop.ETL:\n  tasks:\n    - G:\n        tasks: [EXTRACT]\n",
            ":3: shop.ETL: G needs 'type: group' (the only type there is)",
        ),
        (
            "shop.ETL:\n  tasks:\n    - G:\n        type: group\n        tasks: [EXTRACT]\n        queue: q\n",
            ":6: shop.ETL: group G: unknown key 'queue'; a group has type, tasks",
        ),
        (
            "shop.ETL:\n  tasks: [EXTRACT]\n  schema: shop/missing\n",
            ":3: shop.ETL: schema 'shop/missing' is not a file",
        ),
        (
            GOOD + "  periodic:\n    crontab: '61 * * * *'\n",
            ":6: shop.ETL: crontab '61 * * * *': minute '61': Invalid end range: 61 > 59",
        ),
        (
            GOOD + "  periodic:\n    interval: 60\n    crontab: '* * * * *'\n",
            ":5: shop.ETL: periodic needs exactly one",
        ),
        (GOOD + "  periodic:\n    interval: -5\n", ":6: shop.ETL: periodic interval must be a whole number"),
        (
            GOOD + "  hooks:\n    succes: NOTIFY_SUCCESS\n",
            ":6: shop.ETL: hooks: unknown key 'succes'; hooks are success,",
        ),
        (GOOD + "  queue: {customs: [LOAD]}\n", ":5: shop.ETL: queue customs maps task names to queue names"),
        ("ETL:\n  tasks: [EXTRACT]\n", ":1: workflow name 'ETL': celery-director names workflows 'project.NAME'"),
        ("shop.ETL:\n  tasks: []\n", ":2: shop.ETL: 'tasks' must be a list of at least one task"),
        ("shop.ETL:\n  tasks: [A]\nshop.ETL:\n  tasks: [B]\n", ":3: 'shop.ETL' is given twice"),
        ("- just a list\n", ":1: a workflows.yml maps workflow names"),
    ],
)
def test_a_bad_file_is_reported_with_its_line_and_writes_nothing(db, tmp_path, text, message):
    (tmp_path / "schemas").mkdir()
    path = tmp_path / "workflows.yml"
    path.write_text(text)
    with pytest.raises(CommandError) as error:
        run_command("import_workflows", str(path))
    assert str(error.value).startswith(str(path)), str(error.value)
    assert message in str(error.value), str(error.value)
    assert not JobType.objects.exists()


def test_an_unreadable_file_is_one_line_too(db, tmp_path):
    with pytest.raises(CommandError, match=r"Cannot read .*nope\.yml: No such file or directory"):
        run_command("import_workflows", str(tmp_path / "nope.yml"))


# --- export_job_types → import_job_types --------------------------------------------


@pytest.fixture
def assorted(db):
    hook = JobTypeFactory(name="alert", description="Tell someone", default_params={"to": "ops"})
    JobType.objects.create(
        name="ping",
        kind="http",
        http={"method": "GET", "url": "http://127.0.0.1:9/ping", "expected_status": [200]},
        queue="io",
        priority=3,
        timeout_seconds=20,
        max_retries=2,
        on_failure=hook,
    )
    flow = JobType.objects.create(
        name="flow",
        kind="workflow",
        params_schema={"type": "object", "properties": {"day": {"type": "string"}}},
        on_failure=hook,
        enabled=False,
    )
    flow.steps.create(name="first", job_type=hook, params={"day": "{{ params.day }}"})
    flow.steps.create(name="then", job_type=hook, params={"got": "{{ steps.first.result }}"}, depends_on=["first"])
    Schedule.objects.create(
        name="nightly-alert", job_type=hook, params={"to": "night"}, cron="30 2 * * *", timezone="Europe/Berlin",
        overlap="skip",
    )  # fmt: skip
    Schedule.objects.create(name="often", job_type=hook, interval_seconds=90, enabled=False)


def test_export_then_import_gives_back_the_same_definitions(assorted, tmp_path):
    exported = tmp_path / "job-types.yml"
    run_command("export_job_types", "--output", str(exported))
    first = exported.read_text()
    assert "name: flow" in first and "on_failure: alert" in first
    assert "name: nightly-alert" in first and "timezone: Europe/Berlin" in first
    out, _ = run_command("import_job_types", str(exported))
    assert out.strip().splitlines() == [
        "Job types: created 0; updated 0; unchanged 3.",
        "Schedules: created 0; updated 0; unchanged 2.",
    ]
    # Into an empty database: everything back as it was.
    Schedule.objects.all().delete()
    JobType.objects.update(on_failure=None)
    WorkflowStep.objects.all().delete()
    JobType.objects.all().delete()
    out, _ = run_command("import_job_types", str(exported))
    assert out.startswith("Job types: created 3 (")
    assert "Schedules: created 2 (nightly-alert, often)" in out
    again, _ = run_command("export_job_types")
    assert again == first


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("job_types:\n- name: x\n  kind: task\n  taks: jobs.builtin.echo\n", ":4: job type 'x': unknown key 'taks'"),
        ("job_types:\n- name: x\n  kind: task\n  task: nope\n", ":2: job type 'x': task: Unknown task 'nope'"),
        (
            "job_types:\n- name: w\n  kind: workflow\n  steps:\n  - name: a\n    job_type: a\n    depends_on: [a]\n",
            ":2: job type 'w': steps: Step 'a' depends on itself.",
        ),
        ("jobtypes: []\n", ":1: expected a mapping with 'job_types'"),
        (
            "job_types: []\nschedules:\n- name: s\n  job_type: a\n  cron: 61 * * * *\n",
            ":3: schedule 's': cron: cron '61 * * * *': minute must be 0-59, not 61",
        ),
        (
            "job_types:\n- name: b\n  kind: task\n  task: jobs.builtin.echo\nschedules:\n- name: s\n  job_type: b\n"
            "  interval_seconds: 5\n  every: 5\n",
            ":9: schedule 's': unknown key 'every'",
        ),
    ],
)
def test_import_job_types_reports_bad_definitions_with_their_line(db, tmp_path, text, message):
    JobTypeFactory(name="a")
    path = tmp_path / "job-types.yml"
    path.write_text(text)
    with pytest.raises(CommandError) as error:
        run_command("import_job_types", str(path))
    assert message in str(error.value), str(error.value)
    assert list(JobType.objects.values_list("name", flat=True)) == ["a"]
    assert not Schedule.objects.exists()
