"""A fake Docker Engine API on a unix socket for the benchmarks: /version, /_ping and an empty
container list (which verifies a stack without services); every request is logged.

    python3 scripts/fake-engine.py SOCKET LOGFILE
"""
import json, socketserver, sys
from http.server import BaseHTTPRequestHandler

sock, log = sys.argv[1], sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        with open(log, "a") as f:
            f.write(f"{self.command} {self.path}\n")
        parts = self.path.split("?")[0].split("/")
        if len(parts) > 1 and parts[1].startswith("v1."):
            del parts[1]
        path = "/".join(parts)
        if path == "/version":
            body = {"Version": "99.0.0-fake", "ApiVersion": "1.45", "MinAPIVersion": "1.24",
                    "Os": "linux", "Arch": "amd64"}
        elif path == "/_ping":
            body = "OK"
        elif path == "/containers/json":
            body = []
        else:
            self.reply(404, {"message": f"fake engine: no {path}"})
            return
        self.reply(200, body)

    do_HEAD = do_GET

    def reply(self, code, body):
        text = isinstance(body, str)
        data = (body if text else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


Server(sock, Handler).serve_forever()
