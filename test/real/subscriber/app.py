#!/usr/bin/env python3
"""A consumer's Dapr app: what a team that consumes taskevents writes behind
its own daprd, which delivers the topics through the declarative
subscriptions of subscription.yaml (routing on the CloudEvent type).

Every delivery is appended to FILE as one JSON line: route, content type,
the event as delivered, and the answer given.  The answer follows Dapr's
status contract: {"status": "SUCCESS"}, except for the tests' markers in a
task's title: "[retry]" answers RETRY to the first delivery of each such
event (daprd delivers it again), "[drop]" answers DROP (daprd gives up on it).

  app.py PORT FILE
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, FILE = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
seen = set()


class App(BaseHTTPRequestHandler):
    def _answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):                   # /dapr/config, /dapr/subscribe: nothing programmatic
        self._answer(404, {})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            ev = json.loads(raw)
        except ValueError:
            ev = None
        title = str(((ev or {}).get("data") or {}).get("title") or "") if isinstance(ev, dict) else ""
        with lock:
            first = isinstance(ev, dict) and ev.get("id") not in seen
            if first:
                seen.add(ev.get("id"))
            status = "DROP" if "[drop]" in title else "RETRY" if "[retry]" in title and first else "SUCCESS"
            with open(FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps({"route": self.path, "content_type": self.headers.get("Content-Type"),
                                    "body": raw.decode("utf-8", "replace"), "status": status}) + "\n")
        self._answer(200, {"status": status})

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), App)
print(f"listening on {PORT}", flush=True)
server.serve_forever()
