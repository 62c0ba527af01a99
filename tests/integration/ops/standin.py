"""A stand-in service for supervisor tests: answers 200 on /ready, or fails at start when told.

Usage: python standin.py PORT [exit CODE]. It prints JSON lines like a service does.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ready" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[1 + 1] == "exit":
        print(json.dumps({"event": "starting", "port": port}), flush=True)
        print("fatal: cannot open config/standin.yaml", file=sys.stderr, flush=True)
        raise SystemExit(int(sys.argv[3]))
    server = ThreadingHTTPServer(("127.0.0.1", port), Ready)
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
