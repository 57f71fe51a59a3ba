from django.urls import path

from jobs.director_api import views

app_name = "director_api"

urlpatterns = [
    path("ping", views.PingView.as_view(), name="ping"),
    path("definitions", views.DefinitionListView.as_view(), name="definitions"),
    path("workflows", views.WorkflowListView.as_view(), name="workflows"),
    path("workflows/<str:workflow_id>", views.WorkflowDetailView.as_view(), name="workflow"),
    path("workflows/<str:workflow_id>/relaunch", views.RelaunchView.as_view(), name="relaunch"),
    path("workflows/<str:workflow_id>/cancel", views.CancelView.as_view(), name="cancel"),
]
