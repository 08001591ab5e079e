#!/usr/bin/env python3
"""A private Keystone 30 on loopback for tests: SQLite, fernet keys, uWSGI, everything in one directory.

    keystone_local.py start DIR [--port P]      start; prints {"url", "pid", "admin_password"} as JSON
    keystone_local.py prepare DIR [--port P]    everything but starting uWSGI; prints {"url", "admin_password",
                                                "command", "environment"} for a caller that runs it itself
    keystone_local.py register-image DIR URL    service project, user glance (admin+service roles), image
                                                service and endpoints at URL; prints the glance credentials
    keystone_local.py user DIR PROJECT ROLE...  a new user with ROLEs in PROJECT (made if missing); prints
                                                {"user_id", "user_name", "password", "project_id", "project_name"}
    keystone_local.py token DIR USER PASSWORD PROJECT   prints a project-scoped token
    keystone_local.py stop DIR                  stops it by the PID it recorded (SIGTERM, then SIGKILL)

Needs .venv-keystone (scripts/openstack-venvs keystone). Only the standard library is used here.
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("KEYSTONE_VENV", os.path.join(ROOT, ".venv-keystone"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state_path(directory):
    return os.path.join(directory, "state.json")


def load_state(directory):
    with open(state_path(directory)) as f:
        return json.load(f)


def run(args, env, log):
    result = subprocess.run(args, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"keystone_local: {' '.join(args)} failed ({result.returncode}); see {log.name}")


def prepare(directory, port=None):
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    port = port or free_port()
    for sub in ("fernet-keys", "receipt-keys", "credential-keys"):
        os.makedirs(os.path.join(directory, sub), mode=0o700, exist_ok=True)
    conf = os.path.join(directory, "keystone.conf")
    with open(conf, "w") as f:
        f.write(f"""[DEFAULT]
log_file = {directory}/keystone-app.log
[database]
connection = sqlite:///{directory}/keystone.sqlite
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = {directory}/fernet-keys
[fernet_receipts]
key_repository = {directory}/receipt-keys
[credential]
key_repository = {directory}/credential-keys
[identity]
password_hash_rounds = 4
[cache]
enabled = false
""")
    env = dict(os.environ, OS_KEYSTONE_CONFIG_DIR=directory)
    manage = [os.path.join(VENV, "bin", "keystone-manage"), "--config-file", conf]
    user = str(os.getuid())
    group = str(os.getgid())
    url = f"http://127.0.0.1:{port}"
    password = secrets.token_hex(12)
    with open(os.path.join(directory, "setup.log"), "w") as log:
        run(manage + ["fernet_setup", "--keystone-user", user, "--keystone-group", group], env, log)
        run(manage + ["credential_setup", "--keystone-user", user, "--keystone-group", group], env, log)
        run(manage + ["db_sync"], env, log)
        run(manage + ["bootstrap", "--bootstrap-password", password, "--bootstrap-username", "admin",
                      "--bootstrap-project-name", "admin", "--bootstrap-role-name", "admin",
                      "--bootstrap-service-name", "keystone", "--bootstrap-region-id", "RegionOne",
                      "--bootstrap-admin-url", url + "/v3", "--bootstrap-public-url", url + "/v3",
                      "--bootstrap-internal-url", url + "/v3"], env, log)
    # uWSGI's http-socket neither keeps connections alive nor says so: tell clients to close.
    command = [os.path.join(VENV, "bin", "uwsgi"), "--master", "--http-socket", f"127.0.0.1:{port}",
               "--virtualenv", VENV, "--module", "keystone.wsgi.api:application", "--processes", "1",
               "--threads", "4", "--enable-threads", "--lazy-apps", "--need-app", "--die-on-term",
               "--add-header", "Connection: close"]
    state = {"url": url, "admin_password": password, "port": port, "command": command,
             "environment": {"OS_KEYSTONE_CONFIG_DIR": directory}}
    with open(state_path(directory), "w") as f:
        json.dump(state, f)
    return state


def start(directory, port=None):
    state = prepare(directory, port)
    log = open(os.path.join(directory, "keystone.log"), "w")
    env = dict(os.environ, **state["environment"])
    proc = subprocess.Popen(state["command"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state["pid"] = proc.pid
    with open(state_path(directory), "w") as f:
        json.dump(state, f)
    url = state["url"]
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/v3", timeout=2) as response:
                if response.status == 200:
                    break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            stop(directory)
            raise SystemExit(f"keystone_local: Keystone did not start; see {directory}/keystone.log")
        time.sleep(0.2)
    return state


def stop(directory):
    try:
        pid = load_state(directory)["pid"]
    except (OSError, KeyError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGCONT)  # a test may have stopped it
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Keystone:
    """Just enough of Keystone's v3 API, as the bootstrap admin."""

    def __init__(self, directory):
        self.state = load_state(directory)
        self.url = self.state["url"]
        self.token = self.login("admin", self.state["admin_password"], "admin")

    def call(self, method, path, body=None, token=None, expect=(200, 201, 204)):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Connection", "close")
        token = getattr(self, "token", None) if token is None else token
        if token:
            request.add_header("X-Auth-Token", token)
        for attempt in range(5):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    text = response.read()
                    return response, (json.loads(text) if text else None)
            except urllib.error.HTTPError as error:
                if error.code in expect:
                    return error, None
                raise SystemExit(f"keystone_local: {method} {path}: {error.code} {error.read()[:500]!r}")
            except (ConnectionError, urllib.error.URLError):
                if attempt == 4:
                    raise
                time.sleep(0.5)

    def login(self, user, password, project):
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        response, _ = self.call("POST", "/v3/auth/tokens", body, token="")
        return response.headers["X-Subject-Token"]

    def find(self, kind, name):
        _, body = self.call("GET", f"/v3/{kind}?name={name}")
        items = body[kind]
        return items[0]["id"] if items else None

    def ensure(self, kind, name, fields):
        found = self.find(kind, name)
        if found:
            return found
        singular = kind[:-1]
        _, body = self.call("POST", f"/v3/{kind}", {singular: dict(fields, name=name)})
        return body[singular]["id"]

    def grant(self, project_id, user_id, role):
        role_id = self.ensure("roles", role, {})
        self.call("PUT", f"/v3/projects/{project_id}/users/{user_id}/roles/{role_id}")

    def user(self, project, roles, name=None):
        project_id = self.ensure("projects", project, {"domain_id": "default"})
        name = name or f"{project}-{'-'.join(roles)}-{secrets.token_hex(3)}"
        password = secrets.token_hex(10)
        _, body = self.call("POST", "/v3/users", {"user": {"name": name, "password": password, "domain_id": "default"}})
        user_id = body["user"]["id"]
        for role in roles:
            self.grant(project_id, user_id, role)
        return {"user_id": user_id, "user_name": name, "password": password, "project_id": project_id, "project_name": project}


def register_image(directory, image_url):
    keystone = Keystone(directory)
    state = load_state(directory)
    glance = keystone.user("service", ["admin", "service"], name="glance")
    service_id = keystone.ensure("services", "glance", {"type": "image", "enabled": True})
    for interface in ("public", "internal", "admin"):
        keystone.call("POST", "/v3/endpoints", {"endpoint": {
            "service_id": service_id, "interface": interface, "url": image_url, "region_id": "RegionOne"}})
    glance["auth_url"] = state["url"]
    return glance


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    command, directory = argv[1], argv[2]
    if command == "start":
        port = int(argv[4]) if len(argv) > 4 and argv[3] == "--port" else None
        print(json.dumps(start(directory, port)))
    elif command == "prepare":
        port = int(argv[4]) if len(argv) > 4 and argv[3] == "--port" else None
        print(json.dumps(prepare(directory, port)))
    elif command == "stop":
        stop(directory)
    elif command == "register-image":
        print(json.dumps(register_image(directory, argv[3])))
    elif command == "user":
        print(json.dumps(Keystone(directory).user(argv[3], argv[4:])))
    elif command == "token":
        keystone = Keystone(directory)
        print(keystone.login(argv[3], argv[4], argv[5]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
