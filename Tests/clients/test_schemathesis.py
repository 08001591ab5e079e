"""Fuzzes a running ImageStore with schemathesis from docs/openapi.yaml.

Every generated request (valid and invalid data, every documented operation) must get an answer that
is no 5xx and that the document describes: a documented status code, content type, headers and body
schema. The server is a throwaway one (conftest.py), so destructive operations are fine.

Generated image ids are random UUIDs or strings, which only ever reach the 404 branch; so most cases
on `/v2/images/{image_id}...` are pointed at a real image instead, freshly created either `queued`
or `active` (with a few bytes of data), to reach the handlers' other branches.
"""
import itertools
import json
import os
import urllib.error
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

DOCUMENT = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openapi.yaml")

schema = schemathesis.openapi.from_path(DOCUMENT)
# Bounded: the whole fuzz run must stay within a few minutes on a shared 2-core machine. The
# coverage phase is off: it enumerates every boundary case of every parameter regardless of
# max_examples; the examples and fuzzing phases (valid and invalid data) stay on.
schema.config.phases.update(phases=["examples", "fuzzing"])

# The JSON patch media types are JSON on the wire.
schemathesis.serializer.alias(
    ["application/openstack-images-v2.1-json-patch", "application/openstack-images-v2.0-json-patch"],
    "application/json",
)

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]

# Documented ahead of their registration (feat/health); fuzzed once the server serves them.
HEALTH_PATHS = {"/healthcheck", "/readyz", "/livez"}

# One in three cases keeps its generated id (404 path); the others get a fresh real image.
_targets = itertools.cycle(["generated", "queued", "active"])


def _request(url, method="GET", body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


def _fresh_image(base, with_data):
    status, body = _request(
        base + "/v2/images", "POST",
        json.dumps({"name": "fuzz", "disk_format": "raw", "container_format": "bare"}).encode(),
        {"Content-Type": "application/json"})
    assert status == 201
    image_id = json.loads(body)["id"]
    if with_data:
        status, _ = _request(base + f"/v2/images/{image_id}/file", "PUT", b"0123456789abcdef",
                             {"Content-Type": "application/octet-stream"})
        assert status == 204
    return image_id


@pytest.fixture(scope="module")
def health_served(server):
    try:
        _request(server["url"] + "/livez")
        return True
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
def test_api_matches_document(case, server, health_served):
    if case.operation.path in HEALTH_PATHS and not health_served:
        pytest.skip("the health endpoints are not registered in this build yet")
    if "image_id" in (case.path_parameters or {}):
        target = next(_targets)
        if target != "generated":
            case.path_parameters["image_id"] = _fresh_image(server["url"], with_data=target == "active")
    case.call_and_validate(base_url=server["url"], checks=CHECKS)
