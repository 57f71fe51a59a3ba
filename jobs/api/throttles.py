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

    Counted in the "throttle" cache (Redis), which every web process shares, by
    a counter per URL that starts with the URL's first request of a window and
    lasts the rate's period. DRF's own count (a list of times, read then written
    back) lets concurrent requests overwrite each other's and get past the limit;
    Redis' INCR does not. When Redis does not answer, requests are let through:
    the run is recorded and waits for the broker anyway, and a trigger must not
    fail for a counter.
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
        key = self.get_cache_key(request, view)
        self.now = self.timer()
        try:
            # The window's start and its count expire together, `duration` after its first request.
            self.cache.add(f"{key}:start", self.now, self.duration)
            self.cache.add(key, 0, self.duration)
            try:
                count = self.cache.incr(key)
            except ValueError:  # the window ended between add and incr: this request opens the next
                self.cache.set(key, 1, self.duration)
                count = 1
            self.window_start = self.cache.get(f"{key}:start", self.now) if count > self.num_requests else self.now
        except RedisError as exc:
            logger.warning("Trigger URL %s not rate-limited: the throttle cache did not answer (%s)",
                           view.trigger_url.pk, exc)  # fmt: skip
            return True
        return count <= self.num_requests

    def wait(self) -> float:
        """Seconds until the window ends and the URL takes requests again."""
        return max(self.duration - (self.now - self.window_start), 1)
