"""Local stand-ins for the services Jobsite talks to: an SMTP server, a
webhook receiver and an HTTP service, all real servers on loopback."""

import contextlib
import email
import email.policy
import json
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller


class Mailbox:
    """An SMTP server (aiosmtpd) that keeps what it receives; can be stopped
    and started again on the same port, like a mail server going down."""

    def __init__(self, port: int):
        self.port = port
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._controller: Controller | None = None
        self._lock = threading.Lock()
        # Called once a message is kept, before it is acknowledged: a test's fault.
        self.on_message: Callable[[], None] | None = None

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        with self._lock:
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        if self.on_message:
            self.on_message()
        return "250 Message accepted for delivery"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is None:
            self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
            self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.envelopes.clear()
        self.on_message = None

    def wait_for(self, count: int = 1, timeout: float = 30) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.messages)} emails arrived in {timeout} s, expected {count}")
            time.sleep(0.1)
        return list(self.messages)


def text_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


class WebhookReceiver:
    """An HTTP server that records each POST (and GET): its headers and body in
    `requests`, its path and query in `paths`; it answers with `status`."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []
        # Called once a request is kept, before it is answered: a test's fault.
        self.on_request: Callable[[], None] | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.paths.append(self.path)
                receiver.requests.append((dict(self.headers), body))
                if receiver.on_request:
                    receiver.on_request()
                answer = json.dumps({"ok": receiver.status < 300}).encode()
                with contextlib.suppress(ConnectionError):  # a sender killed by on_request
                    self.send_response(receiver.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hooks/jobsite"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HttpRecorder:
    """An HTTP server that records every request (method, path, headers, body).

    `/redirect/<status>?to=<url>` answers with that redirect; anything else
    with 200 and a small JSON body. Two of them, on two ports, are two origins."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.requests.append((self.command, self.path, dict(self.headers), body))
                url = urlsplit(self.path)
                if url.path.startswith("/redirect/"):
                    self.send_response(int(url.path.rsplit("/", 1)[1]))
                    self.send_header("Location", parse_qs(url.query)["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = json.dumps({"method": self.command, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def received(self, path: str) -> list[tuple[str, dict[str, str], bytes]]:
        """The method, headers and body of each request for `path` (with its query)."""
        return [(method, headers, body) for method, got, headers, body in self.requests if got == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
