"""Flower's options that follow Jobsite's settings. Flower reads this file when
started with `--conf=jobsite/flowerconfig.py` (the Procfiles, docker/compose.yml);
options on its command line win over it, and it over FLOWER_* variables.
"""

from jobsite.celery import app

# Flower asks every worker to send task events every 5 s unless told not to, which
# would turn back on the events CELERY_WORKER_SEND_TASK_EVENTS turned off. Taken from
# the Celery app, this is the value the workers use, parsed once by the settings
# (Flower's `--enable_events=off` would read as true).
enable_events = app.conf.worker_send_task_events
