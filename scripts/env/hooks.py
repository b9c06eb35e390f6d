#!/usr/bin/env python3
"""A webhook receiver over HTTPS, for meshplan's tests (started by up.sh).

Every POST is answered and recorded, one JSON object per line in --log:
{"path", "headers" (names in lower case), "body", "status"}. The answer:

- 401 unless the request's Authorization header is one of the lines of
  --authorizations (re-read on every request, so a test can rotate them),
  or its path starts with /open/;
- else the status a path with the segments status/NNN asks for;
- else 200.

GET /healthz answers 200 (readiness).
"""

import argparse
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--authorizations", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.answer(200 if self.path == "/healthz" else 404)

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            status = self.status()
            record = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
                "status": status,
            }
            with LOCK, open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            self.answer(status)

        def status(self):
            if not self.path.startswith("/open/"):
                with open(args.authorizations, encoding="utf-8") as f:
                    allowed = {line.rstrip("\n") for line in f if line.strip()}
                if self.headers.get("authorization") not in allowed:
                    return 401
            parts = self.path.split("?")[0].split("/")
            for i, part in enumerate(parts[:-1]):
                if part == "status" and parts[i + 1].isdigit():
                    return int(parts[i + 1])
            return 200

        def answer(self, status):
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
