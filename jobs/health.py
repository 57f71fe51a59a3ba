"""GET /healthz: is the database, the broker and a worker there?

Anyone may ask (load balancers, uptime checks), so it is cheap and says little.
The broker and worker check (a connection to the broker, and a ping broadcast
to every worker that waits MONITOR_INSPECT_TIMEOUT for answers) runs at most
once every HEALTHZ_CACHE_SECONDS in each web process, one at a time; every
caller until then gets that answer, with the time it was made. The database is
asked each time (one `SELECT 1`). Worker names and error messages, which name
hosts, addresses and paths, are shown to staff users only; others get the ok
flags and the number of workers. See docs/security.md, "Logins and permissions".
"""

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from jobsite.celery import app


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": str(exc)}


def _broker() -> dict:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": str(exc)}


def _workers(broker_ok: bool) -> dict:
    if not broker_ok:
        return {"ok": False, "names": [], "error": "broker unreachable"}
    try:
        replies = app.control.ping(timeout=settings.MONITOR_INSPECT_TIMEOUT) or []
    except Exception as exc:
        return {"ok": False, "names": [], "error": str(exc)}
    names = sorted(name for reply in replies for name in reply)
    return {"ok": bool(names), "names": names}


@dataclass(frozen=True)
class ClusterCheck:
    broker: dict
    workers: dict
    checked_at: datetime
    monotonic: float


_lock = threading.Lock()
_last: ClusterCheck | None = None


def cluster_check() -> ClusterCheck:
    """The broker and the workers as last seen, checked again once the last
    check is HEALTHZ_CACHE_SECONDS old. One check at a time: callers that come
    during a check wait for it and share it."""
    global _last
    with _lock:
        if _last is None or time.monotonic() - _last.monotonic >= settings.HEALTHZ_CACHE_SECONDS:
            broker = _broker()
            _last = ClusterCheck(broker, _workers(broker["ok"]), timezone.now(), time.monotonic())
        return _last


def _public(check: dict) -> dict:
    """What anyone may see of a check: whether it is ok."""
    return {"ok": check["ok"]}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    database = _database()
    cluster = cluster_check()
    healthy = database["ok"] and cluster.broker["ok"]
    count = {"count": len(cluster.workers["names"])}
    if request.user.is_active and request.user.is_staff:
        shown = {"database": database, "broker": cluster.broker, "workers": {**cluster.workers, **count}}
    else:
        workers = {**_public(cluster.workers), **count}
        shown = {"database": _public(database), "broker": _public(cluster.broker), "workers": workers}
    body = {"status": "ok" if healthy else "error", **shown, "checked_at": cluster.checked_at.isoformat()}
    return JsonResponse(body, status=200 if healthy else 503)
