"""Masking a secret's value out of what a run reports, in each form it may take there."""

import json
from urllib.parse import quote

import httpx
import pytest

from jobs.core import net, secrets
from jobs.core.redaction import MASK, mask_headers, mask_url

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def test_a_value_is_masked_as_it_is_percent_encoded_and_json_escaped():
    value = 'p@ss/wörd "x"+1'
    mask = secrets.Masker([value])
    texts = [
        f"token={value}",
        f"https://example.com/?t={quote(value, safe='')}",
        str(httpx.URL("https://example.com/a", params={"t": value})),
        json.dumps({"t": value}),
        json.dumps({"t": value}, ensure_ascii=False),
    ]
    for text in texts:
        assert value not in mask(text) and MASK in mask(text), text
    assert mask({"k": [f"a {value} b"], value: 1}) == {"k": [f"a {MASK} b"], MASK: 1}


def test_references_are_found_substituted_and_malformed_ones_named():
    config = {
        "url": "https://x.test/?a={{ secrets.A }}",
        "headers": {"H": "Bearer {{secrets.B}}"},
        "body": [1, "{{ secrets.bad-name }}"],
    }
    assert secrets.names_in(config) == {"A", "B"}
    assert secrets.malformed_in(config) == ["{{ secrets.bad-name }}"]
    resolved = secrets.substitute(config, {"A": "1st", "B": "2nd"})
    assert resolved["url"] == "https://x.test/?a=1st"
    assert resolved["headers"] == {"H": "Bearer 2nd"}


def test_a_redirect_to_another_origin_leaves_a_header_holding_a_secret_behind():
    response = httpx.Response(302, headers={"location": "https://elsewhere.test/next"})
    headers = {"X-Plain": "from a secret", "Accept": "text/plain"}
    hop = net.redirect_hop(
        response,
        url="https://api.test/start",
        method="GET",
        headers=headers,
        has_body=False,
        sensitive=frozenset({"X-Plain"}),
    )
    assert hop.headers == {"Accept": "text/plain"}
    same_origin = httpx.Response(302, headers={"location": "/next"})
    hop = net.redirect_hop(
        same_origin,
        url="https://api.test/start",
        method="GET",
        headers=headers,
        has_body=False,
        sensitive=frozenset({"X-Plain"}),
    )
    assert hop.headers == headers


def test_a_credential_header_or_query_value_is_shown_only_when_it_is_nothing_but_references():
    headers = {
        "Authorization": "Bearer {{ secrets.TOKEN }}",
        "X-Api-Key": "{{ secrets.KEY }}",
        "X-Auth-Token": "abc{{ secrets.TOKEN }}",
        "Cookie": "session=1; {{ secrets.TOKEN }}",
    }
    assert mask_headers(headers) == {
        "Authorization": "Bearer {{ secrets.TOKEN }}",
        "X-Api-Key": "{{ secrets.KEY }}",
        "X-Auth-Token": MASK,
        "Cookie": MASK,
    }
    url = "https://x.test/?token={{ secrets.TOKEN }}&api_key=k3y"
    assert mask_url(url) == f"https://x.test/?token={{{{ secrets.TOKEN }}}}&api_key={MASK}"
