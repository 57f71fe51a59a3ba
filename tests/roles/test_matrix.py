"""Roles: who gets what answer where.

These tests walk every API operation (from the OpenAPI schema), every admin
page of every registered model, every monitoring page, Flower and the docs, as
an anonymous visitor and as a user of each role, and compare each answer with
the tables in tables.py. Another test checks that these requests, taken
together, reach every route the URL resolver knows, so that a new route cannot
be left out: add it to a table.
"""

from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import URLResolver, get_resolver, resolve

from tests.roles.conftest import api_client, basic_client, page_client, walk
from tests.roles.tables import ADMIN_MODELS, admin_rows, api_rows, director_rows, page_rows, schema_operations


def test_every_api_operation_answers_each_role_as_the_table_says(world, api_clients):
    table = api_rows(world)
    assert set(table) == schema_operations(), "every operation of the schema needs its row here"
    wrong = walk([row for rows in table.values() for row in rows], api_clients, json=True)
    assert not wrong, "\n".join(wrong)


def test_every_route_of_the_celery_director_api_answers_each_role_as_the_table_says(world, basic_clients):
    wrong = walk(director_rows(world), basic_clients, json=True)
    assert not wrong, "\n".join(wrong)


def test_every_page_answers_each_role_as_the_table_says(world, page_clients, flower):
    wrong = walk(page_rows(world), page_clients)
    assert not wrong, "\n".join(wrong)


# --- A user in no role ------------------------------------------------------------------------

# What any signed-in user may read, role or not: no data, only the way in and the API's description.
OPEN_TO_ANY_USER = {
    "/healthz",
    "/accounts/login/",
    "/api/auth/login/",
    "/api/docs/",
    "/api/v1/",
    "/api/schema/",
    "/director/api/ping",
}


def test_a_signed_in_user_in_no_role_sees_nothing_a_viewer_sees(world, flower):
    """Signing in gives nothing: every page, admin page and API read a Viewer
    gets is refused (the admin sends a user who is not staff to its login)."""
    outsider = User.objects.create_user("outsider", password="pw")
    page, api, basic = page_client(outsider), api_client(outsider), basic_client(outsider)
    api_reads = [row for rows in api_rows(world).values() for row in rows if row.method == "GET"]
    requests = [(page, row, 403) for row in page_rows(world)] + [(api, row, 403) for row in api_reads]
    requests += [(basic, row, 403) for row in director_rows(world)]
    requests += [(page, row, 302) for row in admin_rows(world)]
    wrong, checked = [], 0
    for client, row, refused in requests:
        if row.method != "GET" or row.expected()["viewer"] != 200:
            continue
        checked += 1
        # A trigger URL answers whoever holds its token, account or not.
        expected = 200 if row.url in OPEN_TO_ANY_USER or row.url.startswith("/hooks/") else refused
        status = client.get(row.url).status_code
        if status != expected:
            wrong.append(f"GET {row.url} as a user in no role: {status}, expected {expected}")
    assert checked > 50
    assert not wrong, "\n".join(wrong)


def test_every_admin_page_answers_each_role_as_the_table_says(world, page_clients):
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert registered == set(ADMIN_MODELS), "every model in the admin needs its row in ADMIN_MODELS"
    wrong = walk(admin_rows(world), page_clients)
    assert not wrong, "\n".join(wrong)


# --- Nothing left out --------------------------------------------------------------------------


def all_routes(resolver: URLResolver | None = None, prefix: str = ""):
    """Every route the URL resolver knows, written as ResolverMatch.route writes it."""
    for pattern in (resolver or get_resolver()).url_patterns:
        route = str(pattern.pattern)
        route = prefix + route.removeprefix("^") if prefix else route
        if isinstance(pattern, URLResolver):
            yield from all_routes(pattern, route)
        else:
            yield route


def test_the_tables_reach_every_route_there_is(world):
    requested = [*page_rows(world), *admin_rows(world)]
    requested += [row for rows in api_rows(world).values() for row in rows]
    requested += director_rows(world)
    reached = {resolve(row.url.split("?")[0]).route for row in requested}
    # The API's format suffixes (/api/v1/runs.json) are its routes again, with the same views.
    routes = {route for route in all_routes() if "(?P<format>" not in route and "drf_format_suffix" not in route}
    assert routes - reached == set(), "routes no table requests: add them to a table"
