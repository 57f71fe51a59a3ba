from django.urls import include, path
from rest_framework.routers import DefaultRouter

from jobs.api import secrets, views
from jobs.api.trigger_urls import TriggerUrlViewSet

router = DefaultRouter()
router.register("job-types", views.JobTypeViewSet, basename="jobtype")
router.register("runs", views.RunViewSet, basename="run")
router.register("schedules", views.ScheduleViewSet, basename="schedule")
router.register("secrets", secrets.SecretViewSet, basename="secret")

urlpatterns = [
    path("tasks/", views.TaskListView.as_view(), name="task-list"),
    path("workers/", views.WorkerListView.as_view(), name="worker-list"),
    path(
        "job-types/<str:name>/trigger-urls/",
        TriggerUrlViewSet.as_view({"get": "list", "post": "create"}),
        name="jobtype-trigger-urls",
    ),
    path(
        "job-types/<str:name>/trigger-urls/<str:pk>/",
        TriggerUrlViewSet.as_view({"delete": "destroy"}),
        name="jobtype-trigger-url",
    ),
    path("", include(router.urls)),
]
