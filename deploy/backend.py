#!/usr/bin/env python3
"""The demo's backend: answers every request with who it is and what it was asked.

    backend.py [PORT]                    # plain HTTP (deploy/demo.sh)
    backend.py PORT CERT KEY             # HTTPS with that certificate (deploy/demo-tls.sh)
"""
import http.server
import json
import ssl
import sys

NAME = "demo-backend-tls" if len(sys.argv) > 3 else "demo-backend"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"backend": NAME, "path": self.path,
                           "headers": dict(self.headers)}, indent=2).encode() + b"\n"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
if len(sys.argv) > 3:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
