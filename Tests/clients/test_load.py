"""A shortened scripts/load: concurrent create/upload/download/list/delete, then the store is verified."""
import os
import subprocess
import sys


def test_short_load_has_no_errors_and_a_consistent_store():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, os.path.join(root, "scripts", "load"), "--clients", "16",
                             "--duration", "8"], capture_output=True, text=True, timeout=300)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "errors: 0" in result.stdout
    assert ": OK" in result.stdout


def test_load_across_three_replicas_behind_nginx_has_no_errors_and_a_consistent_store():
    """scripts/load --replicas 3: PostgreSQL, one ganesha export, three replicas, nginx round-robin."""
    import shutil
    import pytest
    if os.geteuid() != 0:
        pytest.skip("needs root (bind mounts)")
    for tool in ("ganesha.nfsd", "nginx", "psql"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.skip(f"{tool} not installed (scripts/setup-system installs it)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, os.path.join(root, "scripts", "load"), "--replicas", "3", "--clients", "12",
                             "--duration", "10"], capture_output=True, text=True, timeout=600)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "errors: 0" in result.stdout
    assert ": OK" in result.stdout
    # Every replica answered a share of the requests.
    answered = [line for line in result.stdout.splitlines() if line.startswith("answered per replica:")]
    assert answered and answered[0].count("127.0.0.1:") == 3, result.stdout
