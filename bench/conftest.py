# The benchmarks use the tests' real parts: their Redis, workers and database.
from tests.conftest import *  # noqa: F403
