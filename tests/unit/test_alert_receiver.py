"""The stack's webhook receiver keeps what Alertmanager posts and lists it for the tests."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

from lethe.stack.alert_receiver import serve

NOTIFICATION = {
    "status": "firing",
    "receiver": "lethe-webhook",
    "alerts": [{"status": "firing", "labels": {"alertname": "LetheBacklogGrowing"}}],
}


def test_posted_notifications_are_kept_in_order_and_listed(tmp_path: Path) -> None:
    file = tmp_path / "receiver" / "notifications.jsonl"
    server = serve("127.0.0.1", 0, file)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        resolved = {**NOTIFICATION, "status": "resolved"}
        for body in (NOTIFICATION, resolved):
            request = urllib.request.Request(
                f"{url}/alerts", data=json.dumps(body).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.status == 200
        with urllib.request.urlopen(f"{url}/alerts", timeout=5) as answer:
            listed = json.loads(answer.read())
        assert [n["status"] for n in listed] == ["firing", "resolved"]
        assert listed[0]["alerts"][0]["labels"] == {"alertname": "LetheBacklogGrowing"}
        assert len(file.read_text().splitlines()) == 2
    finally:
        server.shutdown()
        server.server_close()
