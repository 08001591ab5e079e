"""The real OpenStack clients against a running ImageStore (embedded default: SQLite + local store).

`glance` (python-glanceclient) and `openstack` (python-openstackclient/openstacksdk) run as a user
would, with noauth endpoints. Every downloaded byte is compared with what was uploaded. The `server`
fixture is in conftest.py.
"""
import functools
import hashlib
import http.server
import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.request

from conftest import running_server


def run(args, env_extra=None):
    env = dict(os.environ)
    env.pop("OS_CLOUD", None)
    if env_extra:
        env.update(env_extra)
    with tempfile.TemporaryDirectory(prefix="client-home-") as home:  # no cached schemas between runs
        env["HOME"] = home
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def payload(path, size):
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    return data


def glance(server, *args):
    return run(["glance", "--os-image-url", server["url"], "--os-auth-token", "x", *args])


def openstack(server, *args):
    return run(["openstack", "--os-auth-type", "none", "--os-endpoint", server["url"], *args])


def test_glance_client_session(server, tmp_path):
    data = payload(tmp_path / "in.img", 3 * 1024 * 1024 + 5)
    # glanceclient has no json formatter: parse its table.
    table = glance(server, "image-create", "--disk-format", "raw", "--container-format", "bare",
                   "--name", "glance-img", "--file", str(tmp_path / "in.img"))
    fields = parse_table(table)
    image_id = fields["id"]
    assert fields["status"] == "active"
    assert fields["checksum"] == hashlib.md5(data).hexdigest()
    # The table may cut long values: check the multihash from the API itself.
    doc = json.load(urllib.request.urlopen(f"{server['url']}/v2/images/{image_id}"))
    assert doc["os_hash_algo"] == "sha512"
    assert doc["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert fields["size"] == str(len(data))

    assert image_id in glance(server, "image-list")
    shown = parse_table(glance(server, "image-show", image_id))
    assert shown["name"] == "glance-img"

    glance(server, "image-download", "--file", str(tmp_path / "out.img"), image_id)
    assert (tmp_path / "out.img").read_bytes() == data

    updated = parse_table(glance(server, "image-update", "--property", "k=v", image_id))
    assert updated["k"] == "v"
    glance(server, "image-tag-update", image_id, "blue")
    assert "blue" in parse_table(glance(server, "image-show", image_id))["tags"]

    glance(server, "image-delete", image_id)
    assert image_id not in glance(server, "image-list")
    assert os.listdir(os.path.join(server["work"], "data", "images")) == []


def test_openstack_client_session(server, tmp_path):
    data = payload(tmp_path / "in.img", 2 * 1024 * 1024 + 3)
    created = json.loads(openstack(server, "image", "create", "--file", str(tmp_path / "in.img"),
                                   "osc-img", "-f", "json"))
    image_id = created["id"]
    listed = json.loads(openstack(server, "image", "list", "-f", "json"))
    assert image_id in [row["ID"] for row in listed]

    openstack(server, "image", "save", "--file", str(tmp_path / "out.img"), image_id)
    assert (tmp_path / "out.img").read_bytes() == data

    openstack(server, "image", "set", "--property", "color=red", image_id)
    shown = json.loads(openstack(server, "image", "show", image_id, "-f", "json"))
    assert shown["status"] == "active"
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    props = shown.get("properties") or {}
    assert props.get("color") == "red" or shown.get("color") == "red", shown

    openstack(server, "image", "delete", image_id)
    listed = json.loads(openstack(server, "image", "list", "-f", "json"))
    assert image_id not in [row["ID"] for row in listed]
    assert os.listdir(os.path.join(server["work"], "data", "images")) == []


def test_empty_image_file_with_both_clients(server, tmp_path):
    """An empty --file makes an active 0-byte image with both CLIs, as with Glance; it downloads empty."""
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    created = json.loads(openstack(server, "image", "create", "--disk-format", "raw", "--container-format", "bare",
                                   "--file", str(empty), "osc-empty", "-f", "json"))
    fields = parse_table(glance(server, "image-create", "--disk-format", "raw", "--container-format", "bare",
                                "--name", "glance-empty", "--file", str(empty)))
    for image_id in (created["id"], fields["id"]):
        doc = json.load(urllib.request.urlopen(f"{server['url']}/v2/images/{image_id}"))
        assert doc["status"] == "active", doc
        assert doc["size"] == 0
        assert doc["checksum"] == hashlib.md5(b"").hexdigest()
        assert doc["os_hash_value"] == hashlib.sha512(b"").hexdigest()
        out = tmp_path / f"{image_id}.out"
        openstack(server, "image", "save", "--file", str(out), image_id)
        assert out.read_bytes() == b""
        assert os.path.getsize(os.path.join(server["work"], "data", "images", image_id)) == 0


def parse_table(text):
    """Parses glanceclient's `| Property | Value |` table into a dict."""
    fields = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[0] not in ("Property", "Field"):
            fields[cells[0]] = cells[1]
    return fields


def test_noauth_server_warns_at_startup(server):
    """The embedded default runs noauth: the log must say so, loudly, once at start-up."""
    log = open(os.path.join(server["work"], "server.log")).read()
    assert "authentication is OFF" in log and "flavor = noauth" in log


def wait_active(server, image_id, timeout=60):
    deadline = time.time() + timeout
    while True:
        doc = json.load(urllib.request.urlopen(f"{server['url']}/v2/images/{image_id}"))
        if doc["status"] == "active" or time.time() > deadline:
            return doc
        assert doc["status"] in ("queued", "uploading", "importing"), doc
        time.sleep(0.2)


def test_openstack_interoperable_import_glance_direct_and_web_download(tmp_path):
    """`openstack image create --import` (glance-direct: stage, then import) and `openstack image
    import --method web-download`, unmodified, against the embedded default configured through
    environment variables only (no configuration file): one named store, and the import filter opened
    to a loopback web server. The store is named because openstacksdk 4.22's `image import` always
    sends `all_stores_must_succeed: false`, which Glance (and so ImageStore) refuses with 400 unless
    `enabled_backends` is set — and the CLI then prints the queued image and exits 0."""
    data = payload(tmp_path / "in.img", 3 * 1024 * 1024 + 7)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    web_port = web.server_address[1]
    store = tmp_path / "fast"
    env = {"IMAGESTORE__IMPORT_FILTERING_OPTS__ALLOWED_PORTS": str(web_port),
           "IMAGESTORE__IMPORT_FILTERING_OPTS__ALLOWED_HOSTS": "127.0.0.1",
           "IMAGESTORE__DEFAULT__ENABLED_BACKENDS": "fast:file",
           "IMAGESTORE__GLANCE_STORE__DEFAULT_BACKEND": "fast",
           "IMAGESTORE__FAST__FILESYSTEM_STORE_DATADIR": str(store)}
    try:
        with running_server(env=env) as server:
            created = json.loads(openstack(server, "image", "create", "--import", "--disk-format", "raw",
                                           "--container-format", "bare", "--file", str(tmp_path / "in.img"),
                                           "osc-import", "-f", "json"))
            doc = wait_active(server, created["id"])
            assert doc["status"] == "active", doc
            assert doc["checksum"] == hashlib.md5(data).hexdigest()
            assert doc["os_hash_value"] == hashlib.sha512(data).hexdigest()
            got = urllib.request.urlopen(f"{server['url']}/v2/images/{created['id']}/file").read()
            assert got == data

            # Created through the API: `openstack image create` without --file reads a non-tty stdin
            # (empty here) as the image data, which would make an active 0-byte image, as in Glance.
            request = urllib.request.Request(
                f"{server['url']}/v2/images", method="POST", headers={"Content-Type": "application/json"},
                data=json.dumps({"name": "osc-web", "disk_format": "raw", "container_format": "bare"}).encode())
            target = json.load(urllib.request.urlopen(request))
            openstack(server, "image", "import", "--method", "web-download",
                      "--uri", f"http://127.0.0.1:{web_port}/in.img", target["id"])
            doc = wait_active(server, target["id"])
            assert doc["status"] == "active", doc
            assert doc["size"] == len(data)
            assert doc["os_hash_value"] == hashlib.sha512(data).hexdigest()
            assert doc["stores"] == "fast"
            staging = store / "os_glance_staging_store"
            assert not staging.is_dir() or list(staging.iterdir()) == []
            assert sorted(p.name for p in store.iterdir() if p.is_file()) == sorted([created["id"], target["id"]])
    finally:
        web.shutdown()
