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
