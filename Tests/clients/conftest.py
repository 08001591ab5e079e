"""The running ImageStore that the client tests talk to: one fresh server (embedded default: SQLite
and a local store in a temp dir) per test module, stopped and removed afterwards."""
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


@pytest.fixture(scope="module")
def server():
    binary = os.environ["IMAGESTORE_BIN"]
    work = tempfile.mkdtemp(prefix="imagestore-clients-")
    port = free_port()
    log = open(os.path.join(work, "server.log"), "w")
    proc = subprocess.Popen([binary, "serve", "--bind", f"127.0.0.1:{port}"], cwd=work, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/versions", timeout=1).read()
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("server did not start: " + open(os.path.join(work, "server.log")).read())
                time.sleep(0.1)
        yield {"url": url, "work": work}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
