"""GET /healthz: is the database, the broker and a worker there?"""

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
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


@never_cache
@require_GET
def healthz(request):
    database = _database()
    broker = _broker()
    workers = _workers(broker["ok"])
    healthy = database["ok"] and broker["ok"]
    body = {"status": "ok" if healthy else "error", "database": database, "broker": broker, "workers": workers}
    return JsonResponse(body, status=200 if healthy else 503)
