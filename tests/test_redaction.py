"""A webhook URL may carry a token: what is stored and shown of it is `scheme://host/…`
(jobs/core/redaction.py), in the API, the admin, the run page and the database."""

from jobs.core.redaction import redact_url, redact_urls


def test_a_url_shows_its_scheme_and_host_only():
    assert redact_url("https://u:p@Hooks.Example.com:8443/t/s3cr3t?sig=1#x") == "https://hooks.example.com/…"
    assert redact_url("http://[::1]:8000/t") == "http://[::1]/…"
    assert redact_url("not a url") == "…"


def test_every_url_in_a_text_is_redacted_and_the_rest_kept():
    text = (
        "ConnectError calling http://u:p@ss@127.0.0.1:9/hook?k=v: [Errno 111] Connection refused; "
        "see 'https://x.org/a/b' (or http://y.org/c)."
    )
    assert redact_urls(text) == (
        "ConnectError calling http://127.0.0.1/…: [Errno 111] Connection refused; "
        "see 'https://x.org/…' (or http://y.org/…)."
    )
    assert redact_urls(redact_urls(text)) == redact_urls(text)
    assert redact_urls("to ops@example.com") == "to ops@example.com"
