"""The commands the tests run: the test settings allow these and no others
(JOBS_COMMAND_ALLOWLIST). /bin/sh is a shell, so each of its scripts is listed whole."""

ECHO = ["/bin/echo"]
SLEEP = ["/bin/sleep"]
PARAMS_AND_SECRET = ["/bin/sh", "-c", 'echo "$JOBSITE_PARAMS"; echo "secret=${SECRET_KEY:-none}"']
EXIT_3 = ["/bin/sh", "-c", "echo oops >&2; exit 3"]
LONG_OUTPUT = ["/bin/sh", "-c", "printf 'x%.0s' $(seq 40000); echo end"]
MAYBE_FAIL = ["/bin/sh", "-c", 'case "$JOBSITE_PARAMS" in *fail*) echo "disk <full>" >&2; exit 2;; esac']

# A secret given in env (tests/e2e/test_secrets.py): its length, and itself on stdout and stderr.
PRINT_TOKEN = ["/bin/sh", "-c", 'echo "length=${#API_TOKEN} token=$API_TOKEN"; echo "token=$API_TOKEN" >&2']

ALLOWED = [ECHO, SLEEP, PARAMS_AND_SECRET, EXIT_3, LONG_OUTPUT, MAYBE_FAIL, PRINT_TOKEN]
