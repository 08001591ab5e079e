"""The real OpenStack clients against a running ImageStore (embedded default: SQLite + local store).

`glance` (python-glanceclient) and `openstack` (python-openstackclient/openstacksdk) run as a user
would, with noauth endpoints. Every downloaded byte is compared with what was uploaded. The `server`
fixture is in conftest.py.
"""
import hashlib
import json
import os
import subprocess
import tempfile
import urllib.request


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
