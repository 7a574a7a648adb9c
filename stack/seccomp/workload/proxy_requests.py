"""Sends raw requests to the egress proxy, one connection each; prints their status lines."""

import json
import socket
import sys

host, port, requests = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
statuses = []
for request in requests:
    try:
        connection = socket.create_connection((host, port), 5)
        connection.sendall(request.encode("latin-1"))
        reply = connection.recv(4096).decode("latin-1")
        statuses.append(reply.split("\r\n")[0])
        connection.close()
    except OSError as error:
        statuses.append("error: %r" % error)
print(json.dumps(statuses))
