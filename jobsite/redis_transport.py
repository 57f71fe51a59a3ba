"""kombu's Redis transport, with one guard: what a redis:// or rediss:// broker
URL names in every Jobsite process (install(), called by jobsite/celery.py
before any broker connection is made).

A worker that holds a message it has not acknowledged (a task with a countdown
or an ETA waits in the worker, its message unacknowledged) died when Redis went
away: as the worker drops its broker connection to make a new one, kombu closes
the connection's channel, and the channel puts the messages it holds back into
their queues through a client made from its connection's settings; by then the
connection has let go of its settings (kombu 5.7.0), and the AttributeError
that followed is no connection error, so the worker's consumer did not ignore
it and stopped the worker. The guard makes it the connection error it is: the
consumer then connects again, and the messages stay in Redis's unacknowledged
set, which hands them out again after CELERY_VISIBILITY_TIMEOUT (a run's among
them: jobs/runs/lost.py). tests/e2e/test_faults.py restarts Redis under such a
worker.
"""

from kombu.transport import TRANSPORT_ALIASES, redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(redis.Channel):
    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel is closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(redis.Transport):
    Channel = Channel


def install() -> None:
    """Make this the transport of redis:// and rediss:// URLs (kombu's own names
    for its transports), leaving the URLs as they are: Flower and the logs show
    them, and tell the broker by their scheme."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
