#!/usr/bin/env python3
"""An HTTPS server standing for the caisse's reception of extracts, for the tests.

It requires a client certificate signed by CA (TLS 1.2 or later), stores each PUT body under OUT
with the last segment of the path as its name, and answers 201 with a JSON receipt (the name, the
SHA-256 of what it received, the client certificate's common name). Prints its port and its process
id on stdout.

  upload_server.py CERT KEY CA OUT
"""

import hashlib
import http.server
import json
import os
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        name = os.path.basename(self.path)
        with open(os.path.join(sys.argv[4], name), "wb") as f:
            f.write(body)
        subject = dict(x[0] for x in self.connection.getpeercert().get("subject", ()))
        answer = json.dumps({"received": name, "sha256": hashlib.sha256(body).hexdigest(), "by": subject.get("commonName", "")}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def main():
    cert, key, ca = sys.argv[1:4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], os.getpid(), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
