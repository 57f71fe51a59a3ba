"""A celery-director API client, as a script or service of a celery-director
user would have it: plain HTTP with Basic auth, and only the routes
celery-director documents (its docs/api.md). Nothing in it knows of Jobsite."""

import time
from typing import Any

import httpx

ENDED = ("success", "error", "canceled")


class DirectorError(Exception):
    def __init__(self, response: httpx.Response):
        self.status_code = response.status_code
        self.body = response.json()
        super().__init__(f"{response.status_code}: {self.body}")


class Director:
    def __init__(self, api_url: str, username: str, password: str):
        self.http = httpx.Client(base_url=api_url.rstrip("/") + "/", auth=(username, password), timeout=10)

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise DirectorError(response)
        return response.json()

    def ping(self) -> dict:
        return self._json(self.http.get("ping"))

    def definitions(self) -> list[dict]:
        return self._json(self.http.get("definitions"))

    def run(self, project: str, name: str, payload: dict, comment: str | None = None) -> dict:
        body = {"project": project, "name": name, "payload": payload}
        if comment is not None:
            body["comment"] = comment
        return self._json(self.http.post("workflows", json=body))

    def workflows(self, page: int = 1, per_page: int = 1000, with_payload: bool = True) -> list[dict]:
        query = {"page": page, "per_page": per_page, "with_payload": str(with_payload)}
        return self._json(self.http.get("workflows", params=query))

    def workflow(self, workflow_id: str) -> dict:
        return self._json(self.http.get(f"workflows/{workflow_id}"))

    def relaunch(self, workflow_id: str) -> dict:
        return self._json(self.http.post(f"workflows/{workflow_id}/relaunch", json={}))

    def cancel(self, workflow_id: str) -> dict:
        return self._json(self.http.post(f"workflows/{workflow_id}/cancel", json={}))

    def wait(self, workflow_id: str, *, until=ENDED, timeout: float = 30) -> dict:
        """Poll a workflow until its status is one of `until`."""
        deadline = time.monotonic() + timeout
        while (workflow := self.workflow(workflow_id))["status"] not in until:
            if time.monotonic() > deadline:
                raise TimeoutError(f"workflow {workflow_id} is still {workflow['status']} after {timeout} s")
            time.sleep(0.2)
        return workflow
