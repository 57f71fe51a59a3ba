from django.urls import include, path
from rest_framework.routers import DefaultRouter

from jobs.api import secrets, views

router = DefaultRouter()
router.register("job-types", views.JobTypeViewSet, basename="jobtype")
router.register("runs", views.RunViewSet, basename="run")
router.register("schedules", views.ScheduleViewSet, basename="schedule")
router.register("secrets", secrets.SecretViewSet, basename="secret")

urlpatterns = [
    path("tasks/", views.TaskListView.as_view(), name="task-list"),
    path("workers/", views.WorkerListView.as_view(), name="worker-list"),
    path("", include(router.urls)),
]
