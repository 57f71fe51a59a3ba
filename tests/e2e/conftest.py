import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Handler(BaseHTTPRequestHandler):
    """A small stand-in for a third-party HTTP service."""

    def do_GET(self):
        if self.path.startswith("/ok"):
            self._send(200, {"hello": "world", "path": self.path})
        elif self.path == "/redirect-to-refused":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.2:{self.server.server_port}/ok")
            self.end_headers()
        elif self.path == "/boom":
            self._send(500, {"error": "upstream broke"})
        elif self.path == "/big":
            body = b"x" * 200_000
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self._send(201, {"received": json.loads(self.rfile.read(length) or b"null")})

    def _send(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def http_service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
