"""`/metrics` read by Prometheus' own text parser (the prometheus_client package), as a scraper would.

A server with a configuration file (so the store is guarded: marker present) and `[metrics] enabled`;
after an upload and a download, every family parses, counters carry route templates, the byte
counters equal what crossed the wire, and the guard and health gauges say the store is up.
"""
import json
import os
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from conftest import running_server

CONFIG = """\
[glance_store]
filesystem_store_datadir = {work}/images
[database]
connection = sqlite:///{work}/imagestore.db
[metrics]
enabled = true
"""


def request(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read()


def scrape(url):
    with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    return families


def value(families, family, **labels):
    for s in families[family].samples:
        if all(s.labels.get(k) == v for k, v in labels.items()) and s.name in (family, family + "_total"):
            return s.value
    return None


def test_metrics_parse_with_prometheus_client():
    def marker(work):
        os.makedirs(os.path.join(work, "images"))
        open(os.path.join(work, "images", ".glance"), "w").close()

    with running_server(CONFIG, setup=marker) as server:
        url = server["url"]
        status, body = request(url + "/v2/images", "POST",
                               json.dumps({"name": "m", "disk_format": "raw", "container_format": "bare"}).encode(),
                               {"Content-Type": "application/json"})
        assert status == 201
        image = json.loads(body)["id"]
        data = os.urandom(123_457)
        status, _ = request(f"{url}/v2/images/{image}/file", "PUT", data, {"Content-Type": "application/octet-stream"})
        assert status == 204
        status, got = request(f"{url}/v2/images/{image}/file")
        assert status == 200 and got == data

        families = scrape(url)
        assert families["imagestore_http_requests"].type == "counter"
        assert value(families, "imagestore_http_requests", route="/v2/images/{image_id}/file", method="PUT", status="204") == 1
        assert value(families, "imagestore_http_requests", route="/v2/images", method="POST", status="201") == 1
        assert not any(image in str(s.labels) for f in families.values() for s in f.samples)
        assert value(families, "imagestore_image_bytes", direction="uploaded") == len(data)
        assert value(families, "imagestore_image_bytes", direction="downloaded") == len(data)
        assert families["imagestore_http_request_duration_seconds"].type == "histogram"
        assert value(families, "imagestore_store_enabled", store="file") == 1
        assert value(families, "imagestore_store_check_passing", store="file", check="marker") == 1
        assert value(families, "imagestore_store_size_bytes", store="file") > 0
        assert value(families, "imagestore_healthy") == 1
        assert value(families, "process_resident_memory_bytes") > 1_000_000
