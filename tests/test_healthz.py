def test_healthz_needs_no_login_and_lists_the_worker(worker, client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"]["ok"] and body["broker"]["ok"]
    assert worker.hostname in body["workers"]["names"]


def test_every_other_page_needs_a_login(client, db):
    for url in ("/admin/", "/api/v1/job-types/", "/api/v1/runs/", "/api/docs/", "/api/schema/", "/api/v1/tasks/"):
        assert client.get(url).status_code in (302, 401, 403), url
    assert client.get("/accounts/login/").status_code == 200
