"""Rate limits of the API's views, with DRF's throttling."""

import logging

from django.conf import settings
from django.core.cache import caches
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class TriggerUrlThrottle(SimpleRateThrottle):
    """At most JOBS_TRIGGER_URL_RATE requests per trigger URL (its view sets
    `trigger_url`), whoever sends them; past it, 429 with Retry-After.

    Counted in the "throttle" cache (Redis), which every web process shares.
    When Redis does not answer, requests are let through: the run is recorded
    and waits for the broker anyway, and a trigger must not fail for a counter.
    """

    scope = "trigger_url"

    def __init__(self):
        self.cache = caches["throttle"]
        super().__init__()

    def get_rate(self) -> str:
        return settings.JOBS_TRIGGER_URL_RATE

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": view.trigger_url.pk}

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError as exc:
            logger.warning("Trigger URL %s not rate-limited: the throttle cache did not answer (%s)",
                           view.trigger_url.pk, exc)  # fmt: skip
            return True
