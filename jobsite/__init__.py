# The Celery app is loaded with Django so that `shared_task` binds to it and
# `transaction.on_commit` publishes go through its producer pool.
from .celery import app as celery_app

__all__ = ("celery_app",)
