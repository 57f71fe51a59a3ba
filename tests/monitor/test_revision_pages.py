"""A job type's history pages: revisions with their diffs, one revision with
what changed since, the Restore button (Editors only), and a run's page
naming the revision it ran and whether its job type changed since."""

import pytest
from django.contrib.messages import get_messages

from jobs.models import JobType, Run
from jobs.runs.trigger import run_create
from tests.credentials import SECRETS, fetch_job_type
from tests.factories import JobTypeFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

API = "/api/v1/job-types/"


@pytest.fixture
def nightly(api):
    api.post(API, {"name": "nightly", "kind": "task", "task": "jobs.builtin.echo"}, format="json")
    api.patch(f"{API}nightly/", {"description": "Runs at night"}, format="json")
    return JobType.objects.get(name="nightly")


def test_the_history_page_lists_revisions_with_who_how_and_their_diffs(staff_client, nightly):
    response = staff_client.get("/monitor/job-types/nightly/history/")
    assert response.status_code == 200
    newest, first = nightly.history.all()
    html = response.content.decode()
    assert f'id="revision-{newest.history_id}"' in html and f'id="revision-{first.history_id}"' in html
    assert html.index(f"revision-{newest.history_id}") < html.index(f"revision-{first.history_id}")
    assert '<pre class="new">&quot;Runs at night&quot;</pre>' in html
    assert '<span class="user">boss</span>' in html and '<span class="source">api</span>' in html
    # The current revision has nothing to restore; the older one has its button.
    assert f'id="restore-{first.history_id}"' in html and f'id="restore-{newest.history_id}"' not in html
    assert "csrfmiddlewaretoken" in html


def test_viewers_see_the_history_but_no_restore_button_and_may_not_restore(viewer_client, nightly):
    first = nightly.history.earliest()
    response = viewer_client.get("/monitor/job-types/nightly/history/")
    assert response.status_code == 200 and b"Restore revision" not in response.content
    assert viewer_client.get(f"/monitor/job-types/nightly/history/{first.history_id}/").status_code == 200
    response = viewer_client.post(f"/monitor/job-types/nightly/history/{first.history_id}/restore/")
    assert response.status_code == 403
    assert JobType.objects.get(name="nightly").description == "Runs at night"


def test_restoring_from_the_page_makes_a_new_revision(staff_client, nightly):
    first = nightly.history.earliest()
    response = staff_client.post(f"/monitor/job-types/nightly/history/{first.history_id}/restore/")
    assert response.status_code == 302 and response.url == "/monitor/job-types/nightly/history/"
    assert JobType.objects.get(name="nightly").description == ""
    restored = nightly.history.latest()
    assert (restored.history_change_reason, restored.history_user.username) == ("restore", "boss")


def test_a_restore_that_no_longer_holds_says_why_and_changes_nothing(staff_client, api):
    JobTypeFactory(name="echo")
    JobTypeFactory(name="gone")
    flow = {"name": "etl", "kind": "workflow", "steps": [{"name": "a", "job_type": "echo"}]}
    api.post(API, {**flow, "steps": [*flow["steps"], {"name": "b", "job_type": "gone"}]}, format="json")
    api.patch(f"{API}etl/", {"steps": flow["steps"]}, format="json")
    api.delete(f"{API}gone/")
    first = JobType.objects.get(name="etl").history.earliest()
    response = staff_client.post(f"/monitor/job-types/etl/history/{first.history_id}/restore/")
    assert response.status_code == 302
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("there is no job type named 'gone'" in m for m in said), said
    assert list(JobType.objects.get(name="etl").steps.values_list("name", flat=True)) == ["a"]


def test_a_runs_page_names_its_revision_and_links_to_what_changed_since(staff_client, api, nightly):
    run, _ = run_create(job_type=nightly, params={}, trigger=Run.Trigger.API)
    ran = nightly.history.latest()
    assert Run.objects.get(pk=run.pk).job_type_revision_id == ran.history_id
    html = staff_client.get(f"/monitor/runs/{run.pk}/").content.decode()
    assert f'href="/monitor/job-types/nightly/history/{ran.history_id}/">revision {ran.history_id}</a>' in html
    assert "changed since this run" not in html

    api.patch(f"{API}nightly/", {"max_retries": 3}, format="json")
    html = staff_client.get(f"/monitor/runs/{run.pk}/").content.decode()
    assert "changed since this run" in html
    page = staff_client.get(f"/monitor/job-types/nightly/history/{ran.history_id}/").content.decode()
    changed_since = page[page.index('id="changed-since"') : page.index('id="own-changes"')]
    assert 'data-field="max_retries"' in changed_since and '<pre class="new">3</pre>' in changed_since


def test_the_history_pages_mask_credentials(staff_client, api):
    fetch = fetch_job_type()
    api.patch(f"{API}fetch/", {"description": "changed"}, format="json")
    first = fetch.history.earliest()
    for url in ("/monitor/job-types/fetch/history/", f"/monitor/job-types/fetch/history/{first.history_id}/"):
        html = staff_client.get(url).content.decode()
        assert "********" in html
        assert not [secret for secret in SECRETS if secret in html], url
