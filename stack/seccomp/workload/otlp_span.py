"""Sends one OTLP/JSON span to the collector at argv[1], its attributes carrying the canary
secrets argv[2:]; prints the HTTP status as one JSON line."""

import json
import sys
import urllib.request


def attribute(key, value):
    return {"key": key, "value": {"stringValue": value}}


url, secrets = sys.argv[1], sys.argv[2:]
span = {
    "traceId": "5b8efff798038103d269b633813fc60c",
    "spanId": "eee19b7ec3c1b174",
    "name": "qcrec canary span",
    "kind": 1,
    "startTimeUnixNano": "1764000000000000000",
    "endTimeUnixNano": "1764000000100000000",
    "attributes": [attribute("ib-password", s) for s in secrets]
    + [attribute("http.request.header.authorization", "Basic OTAwNDE3OmFiY2RlZg==")],
}
resource = {"attributes": [attribute("service.name", "qcrec")]}
scope = {"scope": {"name": "qcrec"}, "spans": [span]}
body = {"resourceSpans": [{"resource": resource, "scopeSpans": [scope]}]}
request = urllib.request.Request(
    url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
)
try:
    print(json.dumps({"status": urllib.request.urlopen(request, timeout=10).status}))
except OSError as error:
    print(json.dumps({"status": "error: %r" % error}))
