"""Secrets: written through the API and the admin, never read back; encrypted at
rest and re-encrypted by `rotate_secrets`; referred to by job types as
`{{ secrets.NAME }}`, checked when the job type is saved."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.urls import reverse

from jobs.core.redaction import MASK
from jobs.models import JobType, Secret
from jobs.runs.executors import CommandExecutor
from tests import commands
from tests.factories import job_type_form

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

VALUE = "v4lue-n3ver-shown-Q7"
ROOT = Path(__file__).resolve().parent.parent


def create(api, name="API_TOKEN", value=VALUE, **extra):
    return api.post("/api/v1/secrets/", {"name": name, "value": value, **extra}, format="json")


def define_a_command_using_the_secret(api) -> None:
    """The secret API_TOKEN, and the job type `cmd`: a command with it in its environment."""
    assert create(api).status_code == 201
    body = {
        "name": "cmd",
        "kind": "command",
        "command": {"argv": commands.ECHO, "env": {"T": "{{ secrets.API_TOKEN }}"}},
    }
    assert api.post("/api/v1/job-types/", body, format="json").status_code == 201


def test_it_creates_changes_and_deletes_a_secret_and_no_answer_holds_its_value(api, admin_user):
    response = create(api, description="Token of the billing API")
    assert response.status_code == 201, response.data
    assert set(response.data) == {"name", "description", "created_at", "created_by", "updated_at", "updated_by"}
    assert (response.data["created_by"], response.data["updated_by"]) == (admin_user.username, admin_user.username)
    answers = [response, api.get("/api/v1/secrets/"), api.get("/api/v1/secrets/API_TOKEN/")]
    answers.append(api.patch("/api/v1/secrets/API_TOKEN/", {"value": "an0ther-v4lue"}, format="json"))
    answers.append(api.patch("/api/v1/secrets/API_TOKEN/", {"description": "Billing"}, format="json"))
    answers.append(api.get("/api/schema/"))
    for answer in answers:
        assert answer.status_code == 200 or answer.status_code == 201, answer.content
        assert VALUE.encode() not in answer.content and b"an0ther-v4lue" not in answer.content
        assert b"encrypted_value" not in answer.content
    assert api.get("/api/v1/secrets/API_TOKEN/").data["description"] == "Billing"
    # At rest: encrypted, and it decrypts to the last value given.
    stored = Secret.objects.get(name="API_TOKEN")
    assert "an0ther-v4lue" not in stored.encrypted_value
    assert Secret.values_for({"API_TOKEN"}) == {"API_TOKEN": "an0ther-v4lue"}
    # The audit log names what changed, never a value.
    messages = list(
        LogEntry.objects.filter(object_repr="API_TOKEN").order_by("id").values_list("change_message", flat=True)
    )
    assert messages == [
        "Added through the API.",
        "Changed value through the API.",
        "Changed description through the API.",
    ]
    assert api.delete("/api/v1/secrets/API_TOKEN/").status_code == 204
    assert not Secret.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "has-dash", "value": "long enough"}, "name"),
        ({"name": "1ST", "value": "long enough"}, "name"),
        ({"name": "SHORT", "value": "abc"}, "value"),
        ({"name": "NOVALUE"}, "value"),
    ],
)
def test_it_refuses_a_bad_name_or_value_with_a_field_message(api, body, field):
    response = api.post("/api/v1/secrets/", body, format="json")
    assert response.status_code == 400
    assert field in response.data
    assert not Secret.objects.exists()


def test_it_refuses_a_second_secret_of_the_same_name(api):
    assert create(api).status_code == 201
    response = create(api, value="other-value")
    assert response.status_code == 400
    assert "name" in response.data
    assert Secret.values_for({"API_TOKEN"}) == {"API_TOKEN": VALUE}


def test_without_a_key_a_secret_is_refused_saying_what_to_set(api, settings):
    settings.JOBS_SECRETS_KEYS = []
    response = create(api)
    assert response.status_code == 400
    assert "JOBS_SECRETS_KEYS is not set" in response.data["value"][0]
    assert not Secret.objects.exists()


def test_a_job_type_naming_an_unknown_secret_is_refused_when_saved(api):
    assert create(api).status_code == 201
    body = {
        "name": "call",
        "kind": "http",
        "http": {"url": "https://example.com/?k={{ secrets.API_TOKEN }}", "headers": {"X-Other": "{{ secrets.NOPE }}"}},
        "webhook_url": "https://example.com/hook/{{ secrets.MISSING }}",
        "webhook_secret": "a-long-webhook-secret-for-tests",
    }
    response = api.post("/api/v1/job-types/", body, format="json")
    assert response.status_code == 400
    assert any("No secret called 'NOPE'" in message for message in response.data["http"])
    assert any("No secret called 'MISSING'" in message for message in response.data["webhook_url"])
    assert not JobType.objects.exists()
    body["http"]["headers"] = {"X-Other": "{{ secrets.API_TOKEN }}"}
    body["webhook_url"] = "https://example.com/hook/{{ secrets.API_TOKEN }}"
    assert api.post("/api/v1/job-types/", body, format="json").status_code == 201


def test_a_secret_is_refused_in_argv_and_in_step_params(api):
    assert create(api).status_code == 201
    body = {"name": "cmd", "kind": "command", "command": {"argv": [*commands.ECHO, "{{ secrets.API_TOKEN }}"]}}
    response = api.post("/api/v1/job-types/", body, format="json")
    assert response.status_code == 400
    assert 'set them in "env"' in response.data["command"][0]
    assert (
        api.post(
            "/api/v1/job-types/", {"name": "echo", "kind": "task", "task": "jobs.builtin.echo"}, format="json"
        ).status_code
        == 201
    )
    flow = {
        "name": "flow",
        "kind": "workflow",
        "steps": [{"name": "a", "job_type": "echo", "params": {"t": "{{ secrets.API_TOKEN }}"}}],
    }
    response = api.post("/api/v1/job-types/", flow, format="json")
    assert response.status_code == 400
    assert "secrets are not put into params" in str(response.data["steps"])


def test_a_command_env_takes_a_credential_only_as_a_secret(api):
    assert create(api).status_code == 201
    body = {"name": "cmd", "kind": "command", "command": {"argv": commands.ECHO, "env": {"API_TOKEN": "plain-text"}}}
    response = api.post("/api/v1/job-types/", body, format="json")
    assert response.status_code == 400
    assert "env: 'API_TOKEN' looks like a credential" in response.data["command"][0]
    body["command"]["env"] = {"API_TOKEN": "{{ secrets.API_TOKEN }}", "REGION": "eu-west-1"}
    assert api.post("/api/v1/job-types/", body, format="json").status_code == 201


def test_a_command_env_may_not_change_which_program_runs(api):
    for name in ("PATH", "LD_PRELOAD", "PYTHONPATH", "JOBSITE_RUN_ID"):
        body = {"name": "cmd", "kind": "command", "command": {"argv": commands.ECHO, "env": {name: "x"}}}
        response = api.post("/api/v1/job-types/", body, format="json")
        assert response.status_code == 400, name
        assert f"env: '{name}' is not allowed" in response.data["command"][0]


def test_a_secret_in_use_is_not_deleted_and_the_answer_names_its_job_types(api):
    assert create(api).status_code == 201
    body = {
        "name": "call",
        "kind": "http",
        "http": {"url": "https://example.com/", "body": {"k": "{{ secrets.API_TOKEN }}"}},
    }
    assert api.post("/api/v1/job-types/", body, format="json").status_code == 201
    response = api.delete("/api/v1/secrets/API_TOKEN/")
    assert response.status_code == 409
    assert "used by job type call" in response.data["detail"]
    assert Secret.objects.filter(name="API_TOKEN").exists()


def test_a_reference_is_shown_and_exported_as_written_even_in_a_credential_header(api, tmp_path):
    assert create(api).status_code == 201
    http = {
        "url": "https://example.com/items?token={{ secrets.API_TOKEN }}",
        "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}", "X-Api-Key": "plain-key-value"},
    }
    assert (
        api.post("/api/v1/job-types/", {"name": "call", "kind": "http", "http": http}, format="json").status_code == 201
    )
    read = api.get("/api/v1/job-types/call/").json()["http"]
    assert read["headers"] == {"Authorization": "Bearer {{ secrets.API_TOKEN }}", "X-Api-Key": MASK}
    assert read["url"] == http["url"]
    out = StringIO()
    call_command("export_job_types", stdout=out)
    assert "Bearer {{ secrets.API_TOKEN }}" in out.getvalue()
    assert VALUE not in out.getvalue()


def test_rotate_secrets_encrypts_them_again_with_the_new_first_key(api, settings):
    assert create(api).status_code == 201
    old_key = settings.JOBS_SECRETS_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.JOBS_SECRETS_KEYS = [new_key, old_key]
    out = StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "Encrypted 1 secret(s) again" in out.getvalue()
    settings.JOBS_SECRETS_KEYS = [new_key]  # the old key dropped
    assert Secret.values_for({"API_TOKEN"}) == {"API_TOKEN": VALUE}


def test_rotate_secrets_without_the_old_key_changes_nothing_and_says_so(api, settings):
    assert create(api).status_code == 201
    before = Secret.objects.get().encrypted_value
    settings.JOBS_SECRETS_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match=r"Nothing changed: .*put that key back"):
        call_command("rotate_secrets")
    assert Secret.objects.get().encrypted_value == before


def test_a_run_whose_secret_cannot_be_read_fails_saying_why(api, settings):
    define_a_command_using_the_secret(api)
    settings.JOBS_SECRETS_KEYS = [Fernet.generate_key().decode()]
    run = JobType.objects.get(name="cmd").runs.create(trigger="api")
    with pytest.raises(Exception, match="Not run: a secret was encrypted with a key that is not in JOBS_SECRETS_KEYS"):
        CommandExecutor().execute(run)


# --- The admin ---------------------------------------------------------------------------


def test_the_admin_sets_a_value_it_never_shows_and_keeps_it_when_left_empty(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("admin:jobs_secret_add"), {"name": "API_TOKEN", "value": VALUE, "description": "d"})
    assert response.status_code == 302
    secret = Secret.objects.get(name="API_TOKEN")
    assert secret.created_by == admin_user
    change = reverse("admin:jobs_secret_change", args=[secret.pk])
    pages = [client.get(reverse("admin:jobs_secret_changelist")), client.get(change)]
    assert client.post(change, {"value": "", "description": "new words"}).status_code == 302
    assert Secret.values_for({"API_TOKEN"}) == {"API_TOKEN": VALUE}
    assert Secret.objects.get().description == "new words"
    pages.append(client.get(reverse("admin:jobs_secret_history", args=[secret.pk])))
    for page in pages:
        assert page.status_code == 200
        assert VALUE not in page.content.decode()
        assert secret.encrypted_value not in page.content.decode()
    assert client.post(change, {"value": "n3w-v4lue", "description": "new words"}).status_code == 302
    assert Secret.values_for({"API_TOKEN"}) == {"API_TOKEN": "n3w-v4lue"}


def test_the_admin_refuses_a_short_value_and_a_new_secret_without_one(client, admin_user):
    client.force_login(admin_user)
    for value, message in (("ab", "at least 4 characters"), ("", "Give the secret&#x27;s value.")):
        response = client.post(reverse("admin:jobs_secret_add"), {"name": "API_TOKEN", "value": value})
        assert response.status_code == 200
        assert message in response.content.decode()
    assert not Secret.objects.exists()


def test_the_admin_does_not_delete_a_secret_in_use(client, admin_user, api):
    define_a_command_using_the_secret(api)
    client.force_login(admin_user)
    secret = Secret.objects.get()
    response = client.post(reverse("admin:jobs_secret_delete", args=[secret.pk]), {"post": "yes"})
    assert "used by job type cmd" in response.content.decode()
    assert Secret.objects.exists()


def test_the_site_refuses_to_start_with_a_key_that_is_not_a_fernet_key_in_one_line():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "jobsite.settings", "SECRET_KEY": "x", "JOBS_SECRETS_KEYS": "nope"}
    started = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode != 0
    assert started.stderr.strip().splitlines() == [
        "manage.py: JOBS_SECRETS_KEYS: key 1 is not a Fernet key (32 bytes in url-safe base64, 44 characters): "
        'make one with: python3 -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    ]


def test_migrate_stops_when_secrets_are_stored_and_no_key_is_set(api, settings):
    call_command("check", "--database", "default")  # with the key: fine
    assert create(api).status_code == 201
    settings.JOBS_SECRETS_KEYS = []
    with pytest.raises(SystemCheckError, match=r"JOBS_SECRETS_KEYS is not set, and the database holds 1 secret\(s\)"):
        call_command("check", "--database", "default")
    with pytest.raises(SystemCheckError, match="JOBS_SECRETS_KEYS is not set"):
        call_command("migrate", verbosity=0, skip_checks=False)


def test_the_admin_job_type_form_refuses_an_unknown_secret_and_takes_a_known_one(client, admin_user, api):
    client.force_login(admin_user)
    http = '{"url": "https://example.com/", "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"}}'
    form = job_type_form(name="call", kind="http", task="", http=http)
    response = client.post(reverse("admin:jobs_jobtype_add"), form)
    assert response.status_code == 200
    assert "No secret called &#x27;API_TOKEN&#x27;" in response.content.decode()
    assert not JobType.objects.exists()
    assert create(api).status_code == 201
    assert client.post(reverse("admin:jobs_jobtype_add"), form).status_code == 302
    assert JobType.objects.get().http["headers"]["Authorization"] == "Bearer {{ secrets.API_TOKEN }}"
