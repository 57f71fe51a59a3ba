"""A job type full of credentials, shared by the masking tests
(tests/api/test_job_type_credentials.py, tests/test_credential_masking.py):
each value below must never be read back, by any role, anywhere."""

from jobs.models import JobType
from tests.factories import JobTypeFactory

# What no read may show: each a substring of a stored credential.
SECRETS = ("s3cr3t-bearer", "k3y-value", "sessi0n-cookie", "us3r-pass", "qu3ry-token", "h00k-path", "h00k-sig")
HTTP = {
    "method": "GET",
    "url": "http://robot:us3r-pass@127.0.0.1:9/items?token=qu3ry-token&page=2",
    "headers": {
        "Authorization": "Bearer s3cr3t-bearer",
        "X-Api-Key": "k3y-value",
        "Cookie": "sessi0n-cookie",
        "Accept": "application/json",
    },
}
WEBHOOK = "http://127.0.0.1:9/hooks/h00k-path?sig=h00k-sig"
HOOK_SECRET = "a-long-webhook-secret-for-tests"


def fetch_job_type() -> JobType:
    """An `http` job type `fetch` with HTTP's credentials and a webhook with WEBHOOK's."""
    return JobTypeFactory(
        name="fetch",
        kind="http",
        task="",
        http=HTTP,
        notify_on="failure",
        webhook_url=WEBHOOK,
        webhook_secret=HOOK_SECRET,
    )
