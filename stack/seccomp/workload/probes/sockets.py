"""Probe: TCP, UDP, unix sockets, DNS and listening, as the server's networking does."""

import errno
import json
import os
import socket

out = {}


def attempt(label, family, kind, address, payload=b"GET / HTTP/1.0\r\n\r\n"):
    s = socket.socket(family, kind)
    s.settimeout(3)
    try:
        s.connect(address)
        s.sendall(payload)
        out[label] = "connected:" + str(len(s.recv(512)))
    except TimeoutError:
        out[label] = "timeout"
    except OSError as e:
        out[label] = errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()


attempt("tcp4_server", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 8000))
attempt("tcp4_closed", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 1))
attempt("tcp6_loopback", socket.AF_INET6, socket.SOCK_STREAM, ("::1", 8000))
attempt("udp4", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 9))
attempt("udp6", socket.AF_INET6, socket.SOCK_DGRAM, ("::1", 9))
attempt("tcp_proxy", socket.AF_INET, socket.SOCK_STREAM, ("egress-proxy", 3128))
own = socket.gethostbyname(socket.gethostname())  # an unused address on our own network:
attempt("tcp_no_host", socket.AF_INET, socket.SOCK_STREAM, (own.rsplit(".", 1)[0] + ".250", 443))
attempt("tcp_proxy_closed", socket.AF_INET, socket.SOCK_STREAM, ("egress-proxy", 1))
try:
    socket.create_connection(("canary.invalid", 443), 3)
    out["dns_fail"] = "resolved"
except OSError as e:
    out["dns_fail"] = type(e).__name__
out["dns_ok"] = sorted({a[4][0] for a in socket.getaddrinfo("qc-mcp", 8000)})
out["dns_v6"] = [a[4][0] for a in socket.getaddrinfo("localhost", 80, socket.AF_INET6)]
out["hostname"] = socket.gethostname()
out["byname"] = socket.gethostbyname("localhost")
a, b = socket.socketpair()
a.sendall(b"x")
out["pair"] = b.recv(1).decode()
a.close()
b.close()
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("/tmp/qcrec.sock")
server.listen(1)
client = socket.socket(socket.AF_UNIX)
client.connect("/tmp/qcrec.sock")
conn, _ = server.accept()
client.sendall(b"y")
out["unix"] = conn.recv(1).decode()
for s in (conn, client, server):
    s.close()
os.unlink("/tmp/qcrec.sock")
listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    listener.bind(("::", 0))
    listener.listen()
    out["listen6"] = listener.getsockname()[1]
except OSError as e:
    out["listen6"] = errno.errorcode[e.errno]
listener.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 0))
u.sendto(b"z", ("127.0.0.1", u.getsockname()[1]))
out["udp_self"] = u.recvfrom(8)[0].decode()
u.close()
print(json.dumps(out))
