"""Where Alertmanager's webhooks land in the Compose stack (alert-webhook:9095,
paths /on-call and /team): each notification is written to stdout as one
JSON line, so that it is in `docker compose logs alert-webhook` and in Loki.
A stand-in: point alertmanager.yml's receivers at the bridge to your pager
or chat instead."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 20))
        try:
            payload = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        line = {
            "receiver": self.path.strip("/"),
            "status": payload.get("status"),
            "alerts": [
                {"labels": a.get("labels", {}), "status": a.get("status")}
                for a in payload.get("alerts", [])
            ],
        }
        print(json.dumps(line), flush=True)
        self.send_response(200)
        self.end_headers()

    def do_GET(self):
        # Health: the process answers.
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9095
    ThreadingHTTPServer(("0.0.0.0", port), Receiver).serve_forever()
