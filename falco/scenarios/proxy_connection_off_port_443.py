"""DET-04 scenario: qc-mcp asks the egress proxy to open a tunnel to a canary's port 8080.

Runs on the Docker host (the proxy has no interpreter to run it in): it sends the CONNECT from
inside qc-mcp, and records the connection squid was asked to make. Prevention: NET-04, squid's
allow-list refuses with 403 before it connects, so in the hardened stack Falco sees no connect
at all; the attempt is marked "made": false and carries squid's answer.
"""

CONTROL = "DET-04"
RULE = "qcstack proxy connection off port 443"
SERVICE = "egress-proxy"
RUNS = "host"

REQUEST = """
import json, socket, sys
connection = socket.create_connection(("egress-proxy", 3128), 5)
target = sys.argv[1]
connection.sendall(f"CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n".encode())
print(json.dumps({"status": connection.recv(4096).decode("latin-1").split("\\r\\n")[0]}))
"""

if __name__ == "__main__":
    import subprocess

    canary, containers = CONTEXT["canary"], CONTEXT["containers"]
    target = f"{canary['address']}:{canary['port']}"
    asked = subprocess.run(
        ["docker", "exec", containers["qc-mcp"], "/usr/bin/python3", "-c", REQUEST, target],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    status = json.loads(asked.stdout.strip().splitlines()[-1])["status"]
    FACTS["proxy_status"] = status
    top = subprocess.run(
        ["docker", "top", containers["egress-proxy"], "-o", "pid,uid,comm,args"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()[1:]
    _, uid, name, *argv = next(line.split() for line in top if line.split()[2] == "squid")
    squid = {"name": name, "exepath": argv[0], "argv": argv, "uid": int(uid)}
    attempted(
        "connect",
        process=squid,
        address=canary["address"],
        port=canary["port"],
        protocol="tcp",
        made=" 200 " in status,
    )
    finish()
