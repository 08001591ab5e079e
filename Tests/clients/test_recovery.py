"""Faults injected for real into the running binary: kill -9 mid-upload, a crash between the rename
and the status update, and SIGTERM with an upload in flight (graceful drain)."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """imagestore serve on a config file of its own, started and stopped by PID."""

    def __init__(self, work, drain=30):
        self.work = work
        self.port = free_port()
        self.datadir = os.path.join(work, "images")
        os.makedirs(self.datadir, exist_ok=True)
        open(os.path.join(self.datadir, ".glance"), "w").close()
        self.conf = os.path.join(work, "imagestore.conf")
        with open(self.conf, "w") as f:
            f.write(f"""[DEFAULT]
bind_host = 127.0.0.1
bind_port = {self.port}
shutdown_drain_timeout = {drain}
[glance_store]
filesystem_store_datadir = {self.datadir}
[database]
connection = sqlite:///{work}/imagestore.db
""")
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.log = open(os.path.join(self.work, "server.log"), "a")
        self.proc = subprocess.Popen([os.environ["IMAGESTORE_BIN"], "serve", "--config-file", self.conf],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/versions", timeout=1).read()
                return
            except Exception:
                assert self.proc.poll() is None, open(os.path.join(self.work, "server.log")).read()
                assert time.time() < deadline, "server did not start"
                time.sleep(0.05)

    def stop(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def request(self, method, path, body=None, headers=None):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def create(self):
        status, body = self.request("POST", "/v2/images",
                                    json.dumps({"disk_format": "raw", "container_format": "bare"}).encode(),
                                    {"Content-Type": "application/json"})
        assert status == 201
        return json.loads(body)["id"]

    def image(self, image_id):
        status, body = self.request("GET", f"/v2/images/{image_id}")
        assert status == 200
        return json.loads(body)

    def upload(self, image_id, data):
        return self.request("PUT", f"/v2/images/{image_id}/file", data, {"Content-Type": "application/octet-stream"})[0]

    def files(self):
        return sorted(f for f in os.listdir(self.datadir) if f != ".glance")


@pytest.fixture
def work():
    d = tempfile.mkdtemp(prefix="imagestore-recovery-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_partial_upload(server, image_id, declared, sent):
    """Opens a raw upload declaring `declared` bytes and sends `sent` of them; returns the socket."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall((f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n").encode())
    sock.sendall(os.urandom(sent))
    deadline = time.time() + 10
    while server.image(image_id)["status"] != "saving":
        assert time.time() < deadline
        time.sleep(0.02)
    # The temp file is there and growing: the crash really happens mid-upload.
    while not any(f.endswith(".tmp") for f in os.listdir(server.datadir)):
        assert time.time() < deadline
        time.sleep(0.02)
    return sock


def test_kill9_mid_upload_then_restart_recovers(work):
    server = Server(work)
    server.start()
    try:
        image_id = server.create()
        sock = start_partial_upload(server, image_id, 64 << 20, 8 << 20)
        server.stop(signal.SIGKILL)
        sock.close()
        assert any(f.endswith(".tmp") for f in server.files())  # what the crash left

        server.start()
        image = server.image(image_id)
        assert image["status"] == "queued"
        assert image["size"] is None and image["checksum"] is None
        assert server.files() == []  # temp file swept, nothing published

        data = os.urandom(3 << 20)
        assert server.upload(image_id, data) == 204
        image = server.image(image_id)
        assert image["status"] == "active"
        assert image["checksum"] == hashlib.md5(data).hexdigest()
        assert server.files() == [image_id]
    finally:
        server.stop()


def test_crash_between_rename_and_active_is_reconciled(work):
    server = Server(work)
    server.start()
    try:
        queued = server.create()  # its data "was renamed in" but the row never became active
        active = server.create()
        assert server.upload(active, os.urandom(1000)) == 204
        kept = server.create()
        kept_data = os.urandom(2000)
        assert server.upload(kept, kept_data) == 204
        server.stop(signal.SIGKILL)

        with open(os.path.join(server.datadir, queued), "wb") as f:
            f.write(os.urandom(500))
        os.remove(os.path.join(server.datadir, active))

        server.start()
        assert server.files() == [kept]  # the orphan is gone, the good image untouched
        assert server.image(queued)["status"] == "queued"
        reset = server.image(active)
        assert reset["status"] == "queued" and reset["checksum"] is None  # detected, can be uploaded again
        assert server.image(kept)["status"] == "active"
        status, body = server.request("GET", f"/v2/images/{kept}/file")
        assert status == 200 and body == kept_data
        log = open(os.path.join(work, "server.log")).read()
        assert "removing data no active image points to" in log
        assert "active image has no data file" in log
    finally:
        server.stop()


def test_sigterm_drains_then_aborts_cleanly(work):
    server = Server(work, drain=1)
    server.start()
    try:
        image_id = server.create()
        sock = start_partial_upload(server, image_id, 64 << 20, 4 << 20)
        t0 = time.time()
        status, _ = server.request("GET", "/readyz")
        assert status == 200
        ready_probe = socket.create_connection(("127.0.0.1", server.port))  # idle keep-alive across SIGTERM
        server.proc.send_signal(signal.SIGTERM)
        # Readiness fails at once, so balancers stop sending work: the server stops listening and closes
        # idle connections (a probe on one that is still open would get 503 SHUTTING DOWN).
        time.sleep(0.2)
        try:
            ready_probe.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = ready_probe.recv(4096)
        except OSError:
            answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503"), answer
        ready_probe.close()
        # New connections are refused while the upload drains.
        time.sleep(0.3)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        assert server.proc.wait(timeout=20) == 0
        assert time.time() - t0 < 10
        sock.close()
        assert server.files() == []  # the aborted upload left nothing

        server.start()
        assert server.image(image_id)["status"] == "queued"
    finally:
        server.stop()
