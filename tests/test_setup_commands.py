"""The commands `make run` calls on every start: each is safe to run again."""

from django.contrib.auth.models import User
from django.core.management import call_command

from jobs.models import JobType
from jobs.workflows.graph import steps_errors
from jobs.workflows.steps import step_specs


def test_ensure_admin_creates_a_generated_admin_once_and_prints_the_password(db, capsys, monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = out.split("with password: ")[1].split()[0]
    assert User.objects.get(username="admin").check_password(password)
    call_command("ensure_admin")
    assert "password" not in capsys.readouterr().out.split("already exists")[-1]
    assert User.objects.count() == 1


def test_ensure_admin_uses_the_environment_when_given(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long passphrase")
    call_command("ensure_admin")
    call_command("ensure_admin")
    user = User.objects.get(username="ops")
    assert user.is_superuser and user.check_password("a long passphrase")


def test_load_demo_is_idempotent_and_keeps_user_edits(db):
    call_command("load_demo")
    names = set(JobType.objects.values_list("name", flat=True))
    assert names == {"demo-echo", "demo-sleep", "demo-fail", "demo-workflow"}
    JobType.objects.filter(name="demo-echo").update(description="mine")
    call_command("load_demo")
    assert JobType.objects.count() == 4
    assert JobType.objects.get(name="demo-echo").description == "mine"
    for job_type in JobType.objects.all():
        job_type.full_clean()  # the demos are valid definitions
    workflow = JobType.objects.get(name="demo-workflow")
    assert workflow.steps.count() == 4
    assert steps_errors(step_specs(workflow), params_schema=workflow.params_schema) == []
