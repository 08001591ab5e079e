"""The real `glance` and `openstack` clients against ImageStore with flavor = keystone, as users with
passwords (not fixed tokens): one project creates, uploads and shares an image, the other accepts it
and downloads the same bytes. Then Keystone is stopped: tokens the server already validated still
work, new ones get 503 at once. Keystone and ImageStore are started on free loopback ports and
stopped by PID, also on failure."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import free_port
from test_clients import parse_table, run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYSTONE_PY = os.path.join(ROOT, ".venv-keystone", "bin", "python")
HELPER = os.path.join(ROOT, "scripts", "keystone_local.py")


def helper(*args):
    result = subprocess.run([KEYSTONE_PY, HELPER, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"keystone_local.py {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def wait_http(url, proc, name):
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return
        except Exception:
            assert proc.poll() is None, f"{name} exited at start"
            assert time.time() < deadline, f"{name} did not answer at {url}"
            time.sleep(0.2)


def stop(proc):
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGCONT)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def cloud():
    if not os.path.exists(KEYSTONE_PY):
        pytest.fail("no .venv-keystone: run scripts/openstack-venvs keystone (scripts/test does)")
    work = tempfile.mkdtemp(prefix="imagestore-keystone-clients-")
    procs = []
    try:
        state = json.loads(helper("prepare", os.path.join(work, "keystone"), "--port", str(free_port())))
        klog = open(os.path.join(work, "keystone.log"), "w")
        keystone = subprocess.Popen(state["command"], env=dict(os.environ, **state["environment"]), stdout=klog,
                                    stderr=klog, start_new_session=True)
        procs.append(keystone)
        wait_http(state["url"] + "/v3", keystone, "Keystone")

        port = free_port()
        image_url = f"http://127.0.0.1:{port}"
        glance = json.loads(helper("register-image", os.path.join(work, "keystone"), image_url))
        alice = json.loads(helper("user", os.path.join(work, "keystone"), "alpha", "member", "reader"))
        bob = json.loads(helper("user", os.path.join(work, "keystone"), "beta", "member", "reader"))

        os.makedirs(os.path.join(work, "images"))
        open(os.path.join(work, "images", ".glance"), "w").close()
        conf = os.path.join(work, "imagestore.conf")
        with open(conf, "w") as f:
            f.write(f"""[DEFAULT]
bind_host = 127.0.0.1
bind_port = {port}
[glance_store]
filesystem_store_datadir = {work}/images
[database]
connection = sqlite:///{work}/imagestore.db
[paste_deploy]
flavor = keystone
[keystone_authtoken]
www_authenticate_uri = {state["url"]}/v3
auth_url = {state["url"]}
auth_type = password
username = glance
password = {glance["password"]}
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = RegionOne
interface = public
""")
        slog = open(os.path.join(work, "server.log"), "w")
        server = subprocess.Popen([os.environ["IMAGESTORE_BIN"], "serve", "--config-file", conf], stdout=slog, stderr=slog,
                                  start_new_session=True)
        procs.append(server)
        wait_http(image_url + "/versions", server, "ImageStore")
        yield {"url": image_url, "auth_url": state["url"] + "/v3", "alice": alice, "bob": bob, "work": work,
               "keystone": keystone}
    finally:
        for proc in reversed(procs):
            stop(proc)
        subprocess.run(["rm", "-rf", work])


def credentials(cloud, user, interface_flag="--os-endpoint-type"):
    """Password login options; the image endpoint comes from Keystone's catalog (glance calls the
    interface option --os-endpoint-type, openstack --os-interface)."""
    return ["--os-auth-url", cloud["auth_url"], "--os-username", user["user_name"], "--os-password", user["password"],
            "--os-project-name", user["project_name"], "--os-user-domain-name", "Default",
            "--os-project-domain-name", "Default", "--os-region-name", "RegionOne", interface_flag, "public"]


def glance(cloud, user, *args):
    return run(["glance", *credentials(cloud, user), *args])


def openstack(cloud, user, *args):
    return run(["openstack", *credentials(cloud, user, "--os-interface"), *args], env_extra={"OS_IDENTITY_API_VERSION": "3"})


def run_failing(args):
    with tempfile.TemporaryDirectory(prefix="client-home-") as home:
        result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=home))
    assert result.returncode != 0, f"{' '.join(args)} unexpectedly succeeded:\n{result.stdout}"
    return result.stdout + result.stderr


def test_glance_client_shares_between_projects(cloud, tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 11)
    (tmp_path / "in.img").write_bytes(data)
    alice, bob = cloud["alice"], cloud["bob"]
    fields = parse_table(glance(cloud, alice, "image-create", "--disk-format", "raw", "--container-format", "bare",
                                "--name", "shared-by-glance", "--visibility", "shared", "--file", str(tmp_path / "in.img")))
    image_id = fields["id"]
    assert fields["status"] == "active" and fields["owner"] == alice["project_id"]
    assert fields["checksum"] == hashlib.md5(data).hexdigest()

    # Not shared yet: bob's project cannot see it at all.
    assert "No image found" in run_failing(["glance", *credentials(cloud, bob), "image-show", image_id])

    assert "pending" in glance(cloud, alice, "member-create", image_id, bob["project_id"])
    assert image_id not in glance(cloud, bob, "image-list")
    glance(cloud, bob, "member-update", image_id, bob["project_id"], "accepted")
    assert image_id in glance(cloud, bob, "image-list")
    glance(cloud, bob, "image-download", "--file", str(tmp_path / "out.img"), image_id)
    assert (tmp_path / "out.img").read_bytes() == data
    # bob may read it, not change it.
    assert "not authorized" in run_failing(["glance", *credentials(cloud, bob), "image-update", "--name", "mine", image_id])
    glance(cloud, alice, "image-delete", image_id)


def test_openstack_client_shares_between_projects(cloud, tmp_path):
    data = os.urandom(1024 * 1024 + 7)
    (tmp_path / "in.img").write_bytes(data)
    alice, bob = cloud["alice"], cloud["bob"]
    created = json.loads(openstack(cloud, alice, "image", "create", "--file", str(tmp_path / "in.img"), "--shared",
                                   "--disk-format", "raw", "shared-by-osc", "-f", "json"))
    image_id = created["id"]
    openstack(cloud, alice, "image", "add", "project", image_id, bob["project_id"])
    openstack(cloud, bob, "image", "set", "--accept", image_id)
    listed = json.loads(openstack(cloud, bob, "image", "list", "-f", "json"))
    assert image_id in [row["ID"] for row in listed]
    openstack(cloud, bob, "image", "save", "--file", str(tmp_path / "out.img"), image_id)
    assert (tmp_path / "out.img").read_bytes() == data
    members = json.loads(openstack(cloud, alice, "image", "member", "list", image_id, "-f", "json"))
    assert [(m.get("Member ID"), m.get("Status")) for m in members] == [(bob["project_id"], "accepted")]
    openstack(cloud, alice, "image", "remove", "project", image_id, bob["project_id"])
    listed = json.loads(openstack(cloud, bob, "image", "list", "-f", "json"))
    assert image_id not in [row["ID"] for row in listed]


def token(cloud, user):
    return helper("token", os.path.join(cloud["work"], "keystone"), user["user_name"], user["password"],
                  user["project_name"]).strip()


def status(url, token_value):
    request = urllib.request.Request(url, headers={"X-Auth-Token": token_value})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_zz_keystone_stopped_knownTokensServed_newOnes503Fast(cloud):
    """Runs last in this module (it stops Keystone)."""
    known = token(cloud, cloud["alice"])
    fresh = token(cloud, cloud["bob"])
    assert status(cloud["url"] + "/v2/images", known) == 200
    stop(cloud["keystone"])
    assert status(cloud["url"] + "/v2/images", known) == 200
    started = time.time()
    assert status(cloud["url"] + "/v2/images", fresh) == 503
    assert time.time() - started < 10
    assert status(cloud["url"] + "/v2/images", "garbage") == 503
    assert urllib.request.urlopen(cloud["url"] + "/versions", timeout=10).status == 200
