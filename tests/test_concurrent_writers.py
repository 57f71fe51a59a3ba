"""Web, worker and beat write to one database at once: on SQLite, without "database is locked"."""

import os
import subprocess
import sys

import pytest

from jobs.models import Run
from tests.conftest import ROOT, _database_url

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

WRITER = """
import django, sys
django.setup()
from django.db import transaction
from jobs.models import JobType, Run
job_type = JobType.objects.get(name="shared")
for i in range(int(sys.argv[1])):
    with transaction.atomic():
        run = Run.objects.create(job_type=job_type, trigger="cli")
        Run.objects.filter(pk=run.pk).update(status="queued")
    run.mark_started(worker=sys.argv[2])
    run.mark_succeeded(result={"i": i})
"""


def test_concurrent_writers_do_not_hit_database_is_locked(transactional_db):
    from tests.factories import JobTypeFactory

    JobTypeFactory(name="shared")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url()}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, "150", f"writer-{n}"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    errors = [writer.communicate(timeout=240)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0, 0, 0], "\n".join(errors)
    assert Run.objects.filter(status="succeeded").count() == 600
