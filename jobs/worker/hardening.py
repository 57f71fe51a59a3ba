"""What a worker does to keep its secrets from the `command` runs it starts.

A command's child process gets none of the worker's environment (see the command
executor in jobs/runs/executors.py), but it runs as the worker's user, and the
same user may read any process's /proc/<pid>/environ, where SECRET_KEY,
DATABASE_URL and the rest stay for the process's life. So, with the command kind
on, the worker's processes make themselves non-dumpable (Linux): their /proc
files then belong to root and are unreadable to that user, and no process of that
user may attach a debugger to them. A child started with execve is dumpable
again, for itself only. Root, or a process with CAP_SYS_PTRACE, still reads
everything: never run workers as root. See docs/security.md, "Command allowlist".
"""

import ctypes
import logging
import sys

from celery import signals
from django.conf import settings

logger = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4


def keep_environment_private() -> bool:
    """Make this process non-dumpable; whether that was done (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        logger.warning("Could not make the worker non-dumpable: errno %s", ctypes.get_errno())
        return False
    return True


@signals.worker_init.connect
@signals.worker_process_init.connect
def on_worker_start(**_) -> None:
    # The main process, before it forks the pool (which inherits the flag), and
    # each pool process again, in case it was started some other way.
    if settings.JOBS_COMMAND_ALLOWLIST:
        keep_environment_private()
