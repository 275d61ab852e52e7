"""A real HTTP server on 127.0.0.1 that records webhook requests and answers with scripted codes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    # Status codes to answer with, in order; 200 once they run out.
    script: list[int] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self.receiver.received.append(Received(self.path, dict(self.headers.items()), body))
        code = self.receiver.script.pop(0) if self.receiver.script else 200
        payload = b'{"ok": true}' if code < 300 else b"upstream trouble"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


class WebhookServer:
    def __enter__(self) -> Receiver:
        self.receiver = Receiver(url="")
        handler = type("Handler", (_Handler,), {"receiver": self.receiver})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.receiver.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/triage"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.receiver

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
