from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required, login_required
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from jobs.api.trigger_urls import TriggerUrlHookView, TriggerUrlRunView
from jobs.health import healthz
from jobs.monitor.flower import flower_proxy
from jobs.monitor.metrics import metrics

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="monitor:dashboard", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("jobs.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Its script from a URL of its own rather than inline, for the Content-Security-Policy.
    path(
        "api/docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html")),
        name="swagger-ui",
    ),
    path("api/auth/", include("rest_framework.urls")),
    path("director/api/", include("jobs.director_api.urls")),
    path("monitor/", include("jobs.monitor.urls")),
    # Trigger URLs: the one write that needs no login (the token in the path is
    # the credential; docs/security.md#trigger-urls), marked so for any login requirement.
    # Any token or id reaches the views, which answer 404 in JSON for those that do not exist.
    path("hooks/<str:token>/", login_not_required(TriggerUrlHookView.as_view()), name="trigger-url-hook"),
    path(
        "hooks/<str:token>/runs/<str:run_id>/",
        login_not_required(TriggerUrlRunView.as_view()),
        name="trigger-url-run",
    ),
    re_path(r"^flower/(?P<path>.*)$", flower_proxy, name="flower"),
]
