"""The running ImageStores that the client tests talk to, each fresh in a temp dir, stopped and
removed afterwards: `server` (embedded default: SQLite and a local store) and `disabled_store_server`
(a configuration file with enabled_backends, so a guarded multi-store deployment, whose store is
disabled because its marker file is missing)."""
import contextlib
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


@contextlib.contextmanager
def running_server(config=None, setup=None, env=None):
    """Starts `imagestore serve` in a temp dir; `config` is an INI text with `{work}` for that dir;
    `setup(work)` runs before the server starts (e.g. to put a marker into the store directory);
    `env` adds environment variables (`IMAGESTORE__SECTION__KEY` options)."""
    binary = os.environ["IMAGESTORE_BIN"]
    work = tempfile.mkdtemp(prefix="imagestore-clients-")
    if setup is not None:
        setup(work)
    port = free_port()
    args = [binary, "serve", "--bind", f"127.0.0.1:{port}"]
    if config is not None:
        path = os.path.join(work, "imagestore.conf")
        with open(path, "w") as f:
            f.write(config.format(work=work))
        args += ["--config-file", path]
    log = open(os.path.join(work, "server.log"), "w")
    proc = subprocess.Popen(args, cwd=work, stdout=log, stderr=log, env={**os.environ, **(env or {})})
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


@pytest.fixture(scope="module")
def server():
    with running_server() as s:
        yield s


DISABLED_STORE_CONFIG = """\
[DEFAULT]
enabled_backends = fast:file
[glance_store]
default_backend = fast
[fast]
filesystem_store_datadir = {work}/images
store_description = The fuzzed store
[database]
connection = sqlite:///{work}/imagestore.db
"""


@pytest.fixture(scope="module")
def disabled_store_server():
    with running_server(DISABLED_STORE_CONFIG) as s:
        yield s
