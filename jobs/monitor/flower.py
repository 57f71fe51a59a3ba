"""/flower/: Flower, reached through the web process, for staff users who may
see runs; its controls (POST: revoke, shut down or resize workers, send any
task with any arguments) for superusers only, as they bypass Jobsite.

Flower listens on loopback with its own basic-auth credentials, which only
this proxy knows. Django does the rest: the login, the staff check, CSRF on
POST (Flower's pages get a script that sends Django's token), and
X-Frame-Options, so the workers page can embed Flower from the same origin.

Flower's calls that wait for a task are refused here: `api/task/result/<id>`
with a `timeout` and `api/task/apply/<name>` each hold one of the few threads
Flower has for such waits (five) until the task ends or the timeout passes, so
a handful of them would stop Flower for everyone. What the workers' config
shows is kept free of secrets by jobsite/celery.py. Flower's pages get the
site's Content-Security-Policy, plus the hash of the one inline script they
have. See docs/security.md, "Flower".
"""

import base64
import hashlib
import logging

import httpx
from csp.decorators import csp_update
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.templatetags.static import static
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10
# Sent on to Flower; the browser's cookies (Django's session) never are.
REQUEST_HEADERS = ("Accept", "Content-Type", "X-Requested-With", "X-XSRFToken")
RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "ETag", "Last-Modified", "Expires", "Content-Disposition")


def _sha256(script: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


# Flower's only inline script (its workers page: whether to refresh by itself)
# and inline style (a column's width on a worker's page), exactly as Flower
# renders them, allowed by their hashes: no other inline script or style (one
# slipped into a task's name or arguments) runs on this site's origin.
FLOWER_INLINE_SCRIPTS = [f"\nvar autorefresh = {value};\n" for value in (0, 1)]
FLOWER_INLINE_STYLES = ["width: 125px;"]
FLOWER_CSP = {
    "script-src": [_sha256(script) for script in FLOWER_INLINE_SCRIPTS],
    "style-src": ["'unsafe-hashes'", *(_sha256(style) for style in FLOWER_INLINE_STYLES)],
}


def may_see_flower(user) -> bool:
    return user.is_active and user.is_staff and user.has_perm("jobs.view_run")


def refused_wait(request: HttpRequest, path: str) -> str | None:
    """Why this request to Flower is refused, if it would make Flower wait for a task."""
    if path.startswith("api/task/result/") and "timeout" in request.GET:
        return (
            "Flower's result wait (timeout=...) is not available through Jobsite: "
            "ask without timeout, and ask again until the task is ready."
        )
    if path.startswith("api/task/apply/"):
        return (
            "Flower's api/task/apply waits for the task to end and is not available through Jobsite: "
            "use api/task/async-apply, then api/task/result."
        )
    return None


def shown_url(url: str) -> str:
    """A URL as a page may show it: without the user and password it may hold."""
    try:
        return str(httpx.URL(url).copy_with(userinfo=b""))
    except (httpx.InvalidURL, TypeError):
        return "(FLOWER_URL cannot be read as a URL)"


def _upstream_headers(request: HttpRequest) -> dict[str, str]:
    headers = {name: request.headers[name] for name in REQUEST_HEADERS if name in request.headers}
    # Compressed bodies would have to be decoded to add the CSRF script.
    headers["Accept-Encoding"] = "identity"
    if settings.FLOWER_BASIC_AUTH:
        token = base64.b64encode(settings.FLOWER_BASIC_AUTH.encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


def _local_location(location: str) -> str:
    """A redirect to Flower's own address, made relative so it comes back here."""
    upstream = httpx.URL(settings.FLOWER_URL)
    target = httpx.URL(location)
    if target.is_absolute_url and (target.scheme, target.host, target.port) == (
        upstream.scheme,
        upstream.host,
        upstream.port,
    ):
        query = f"?{target.query.decode()}" if target.query else ""
        return f"{target.path}{query}"
    return location


def _with_csrf_script(request: HttpRequest, html: bytes) -> bytes:
    """Flower's jQuery POSTs (revoke, terminate, pool size...) must carry
    Django's CSRF token through the proxy; this script adds it."""
    from django.middleware.csrf import get_token

    get_token(request)  # makes sure the CSRF cookie is set
    tag = format_html(
        '<script src="{}" data-cookie="{}"></script>', static("jobs/flower-csrf.js"), settings.CSRF_COOKIE_NAME
    )
    head, marker, tail = html.rpartition(b"</body>")
    if not marker:
        return html + tag.encode()
    return head + tag.encode() + marker + tail


@csrf_exempt  # checked below by csrf_protect, once the body is read
@csp_update(FLOWER_CSP)
@login_required
@require_http_methods(["GET", "POST"])
def flower_proxy(request: HttpRequest, path: str = "") -> HttpResponse:
    if not may_see_flower(request.user):
        raise PermissionDenied("Flower is for staff users who may see runs.")
    if request.method == "POST" and not request.user.is_superuser:
        raise PermissionDenied(
            "Flower's controls act on the workers behind Jobsite's back: they are for superusers. "
            "Cancel runs from their page."
        )
    # Read the raw body first: the CSRF check parses form posts, and a parsed
    # multipart stream could no longer be passed on to Flower as it came.
    request.body  # noqa: B018
    return _proxy(request, path)


@csrf_protect
def _proxy(request: HttpRequest, path: str) -> HttpResponse:
    if reason := refused_wait(request, path):
        return HttpResponseBadRequest(reason, content_type="text/plain; charset=utf-8")
    url = f"{settings.FLOWER_URL.rstrip('/')}/{path}"
    try:
        upstream = httpx.request(
            request.method,
            url,
            params=request.GET.urlencode() or None,
            content=request.body if request.method == "POST" else None,
            headers=_upstream_headers(request),
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        logger.warning("Flower did not answer at %s: %s", shown_url(settings.FLOWER_URL), exc)
        context = {"flower_url": shown_url(settings.FLOWER_URL), "error": str(exc) or exc.__class__.__name__}
        return render(request, "monitor/flower_unavailable.html", context, status=502)
    if upstream.status_code == 401:
        # Flower refused the proxy's credentials: a configuration problem, not the user's.
        logger.error("Flower refused FLOWER_BASIC_AUTH at %s", shown_url(settings.FLOWER_URL))
        context = {
            "flower_url": shown_url(settings.FLOWER_URL),
            "error": "Flower refused the credentials in FLOWER_BASIC_AUTH.",
        }
        return render(request, "monitor/flower_unavailable.html", context, status=502)
    content = upstream.content
    if upstream.headers.get("Content-Type", "").startswith("text/html"):
        content = _with_csrf_script(request, content)
    response = HttpResponse(content, status=upstream.status_code)
    for name in RESPONSE_HEADERS:
        if name in upstream.headers:
            response[name] = upstream.headers[name]
    if "Location" in upstream.headers:
        response["Location"] = _local_location(upstream.headers["Location"])
    return response
