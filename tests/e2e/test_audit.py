"""Who triggered, cancelled and reran runs, through a real worker: the worker's
own updates when it stops a cancelled task leave the record alone."""

from jobs.models import Run
from tests.conftest import wait_for_run
from tests.factories import JobTypeFactory


def test_it_keeps_who_triggered_cancelled_and_reran_a_run_that_a_worker_was_running(
    worker, api_as, operator, admin_user
):
    JobTypeFactory(name="nap", task="jobs.builtin.sleep")
    JobTypeFactory(name="echo", task="jobs.builtin.echo")
    as_operator, as_admin = api_as(operator), api_as(admin_user)
    run = Run.objects.get(
        pk=as_operator.post("/api/v1/job-types/nap/run/", {"params": {"seconds": 60}}, format="json").data["id"]
    )
    wait_for_run(run, "running")
    assert as_admin.post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 200
    rerun_id = as_operator.post(f"/api/v1/runs/{run.pk}/rerun/", format="json").data["id"]
    rerun = wait_for_run(Run.objects.get(pk=rerun_id), "running")
    assert as_operator.post(f"/api/v1/runs/{rerun.pk}/cancel/").status_code == 200
    # Both worker processes were stopped and freed: an echo gets through.
    echo = Run.objects.get(pk=as_operator.post("/api/v1/job-types/echo/run/", format="json").data["id"])
    assert wait_for_run(echo, timeout=20).status == "succeeded"

    data = as_operator.get(f"/api/v1/runs/{run.pk}/").data
    assert (data["status"], data["requested_by"], data["cancelled_by"]) == ("cancelled", "operator", "boss")
    data = as_operator.get(f"/api/v1/runs/{rerun.pk}/").data
    assert (data["status"], data["trigger"], data["rerun_of"]) == ("cancelled", "rerun", run.pk)
    assert (data["requested_by"], data["cancelled_by"]) == ("operator", "operator")
