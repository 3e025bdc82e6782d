"""Send one signed Klarefi event to the demo server, as Klarefi would.

.venv/bin/python example_project/send_event.py [PORT]    (default 8000, as make demo)
"""

from __future__ import annotations

import json
import sys
import urllib.request

from django_klarefi import sign_webhook_payload

port = sys.argv[1] if len(sys.argv) > 1 else "8000"
body = json.dumps({"id": "evt_demo_1", "event": "case.completed", "case_id": "case_42"}).encode()
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/webhooks/klarefi",
    data=body,
    headers={
        "Content-Type": "application/json",
        "X-Klarefi-Signature": sign_webhook_payload(body, "whsec_demo_secret"),
    },
)
with urllib.request.urlopen(request) as response:
    print(response.status, response.read().decode())
