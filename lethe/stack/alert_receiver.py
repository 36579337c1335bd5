"""A webhook receiver for Alertmanager's notifications, for the local stack and its tests.

`python -m lethe.stack.alert_receiver --listen 127.0.0.1:9096 --file <notifications.jsonl>`
appends every notification POSTed to /alerts to the file (one JSON object a line, as
Alertmanager sent it: status, alerts with their labels and annotations) and answers
GET /alerts with them all as a JSON list; GET /-/ready answers 200. Alerts carry metric
labels only (tables, topics, reasons), never personal data.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(host: str, port: int, file: Path) -> ThreadingHTTPServer:
    """A server (not yet serving: call `serve_forever`) keeping notifications in `file`."""
    lock = threading.Lock()
    file.parent.mkdir(parents=True, exist_ok=True)
    file.touch()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/alerts":
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                notification = json.loads(body)
            except ValueError:
                self.send_error(400, "not JSON")
                return
            with lock, file.open("a") as out:
                out.write(json.dumps(notification, separators=(",", ":")) + "\n")
            self.reply(200, b"{}")

        def do_GET(self) -> None:
            if self.path == "/-/ready":
                self.reply(200, b"ready\n")
            elif self.path == "/alerts":
                with lock:
                    lines = file.read_text().splitlines()
                self.reply(200, ("[" + ",".join(lines) + "]").encode())
            else:
                self.send_error(404)

        def reply(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port")
    parser.add_argument("--file", required=True, type=Path)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    serve(host, int(port), args.file).serve_forever()


if __name__ == "__main__":
    main()
