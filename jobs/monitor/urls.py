from django.urls import path

from jobs.monitor import revisions, views

app_name = "monitor"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("live/", views.dashboard_live, name="dashboard-live"),
    path("runs/", views.run_list, name="runs"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run"),
    path("runs/<uuid:run_id>/live/", views.run_live, name="run-live"),
    path("runs/<uuid:run_id>/steps/", views.run_steps_live, name="run-steps"),
    path("runs/<uuid:run_id>/logs/", views.run_logs_live, name="run-logs"),
    path("runs/<uuid:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<uuid:run_id>/rerun/", views.run_rerun, name="run-rerun"),
    path("job-types/", views.job_type_list, name="job-types"),
    path("job-types/<path:name>/history/", revisions.job_type_history, name="job-type-history"),
    path("job-types/<path:name>/history/<int:revision_id>/", revisions.job_type_revision, name="job-type-revision"),
    path(
        "job-types/<path:name>/history/<int:revision_id>/restore/",
        revisions.job_type_restore,
        name="job-type-restore",
    ),
    path("job-types/<path:name>/", views.job_type_detail, name="job-type"),
    path("schedules/", views.schedule_list, name="schedules"),
    path("schedules/<int:schedule_id>/", views.schedule_detail, name="schedule"),
    path(
        "schedules/<int:schedule_id>/backfills/<int:backfill_id>/cancel/",
        views.backfill_cancel_view,
        name="backfill-cancel",
    ),
    path("workers/", views.workers, name="workers"),
    path("audit/", views.audit_log, name="audit"),
]
