"""Recording-only HTTP CONNECT proxy + QuantConnect API double (self-made CA, never real)."""

import http.server
import json
import socket
import socketserver
import ssl
import threading


class Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # A large answer for project reads, as a big organisation's would be.
        projects = [{"projectId": i, "name": "p%d" % i} for i in range(20000)]
        body = json.dumps(
            {
                "success": True,
                "errors": [],
                "versions": [],
                "projects": projects if self.path.endswith("/projects/read") else [],
                "organizationId": "qcrec",
                "card": None,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


class ThreadingHTTPS(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/certs/leaf.pem", "/certs/leaf.key")
api = ThreadingHTTPS(("127.0.0.1", 8443), Api)
api.socket = context.wrap_socket(api.socket, server_side=True)
threading.Thread(target=api.serve_forever, daemon=True).start()


def pump(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Proxy(socketserver.BaseRequestHandler):
    def handle(self):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        words = head.split(b"\r\n", 1)[0].split()
        if len(words) < 2 or words[0] != b"CONNECT" or words[1] != b"www.quantconnect.com:443":
            self.request.sendall(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        upstream = socket.create_connection(("127.0.0.1", 8443))
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        back.start()
        pump(self.request, upstream)
        back.join(5)
        upstream.close()


class ThreadingTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


ThreadingTCP(("0.0.0.0", 3128), Proxy).serve_forever()
