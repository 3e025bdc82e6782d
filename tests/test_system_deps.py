"""``make test`` on a fresh machine: scripts/system-deps.sh installs the Debian packages the
suite needs when it runs as root, and otherwise stops with the one command to run.

The script runs for real, with a PATH on which none of the packages is found and stand-ins
for ``id`` (root or not) and ``apt-get`` (which records what it was asked).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-deps.sh"
ALL = "chromium fonts-dejavu-core postgresql redis-server wrk"


def fresh_machine(tmp_path: Path, uid: int) -> tuple[dict[str, str], Path]:
    """A PATH with the shell tools the script uses and none of the packages it looks for."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "grep", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    calls = tmp_path / "apt-calls"
    for name, body in {
        "id": f"echo {uid}",
        "apt-get": f'echo "$@" >> {calls}',
    }.items():
        path = bin_dir / name
        path.write_text(f"#!{shutil.which('bash')}\n{body}\n")
        path.chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp")}, calls


def test_as_root_it_installs_every_missing_package_with_apt(tmp_path):
    env, calls = fresh_machine(tmp_path, uid=0)
    result = subprocess.run(
        [shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == ["update -qq", f"install -y -qq {ALL}"]


def test_not_root_it_stops_with_the_one_command_to_run(tmp_path):
    env, calls = fresh_machine(tmp_path, uid=1000)
    result = subprocess.run(
        [shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert f"    sudo apt-get install -y {ALL}\n" in result.stderr
    assert not calls.exists()


def make_dry_run(target: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.test-installed", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()


def test_make_test_runs_it_first():
    lines = make_dry_run("test")
    assert lines[0] == "scripts/system-deps.sh"
    assert any(line.startswith("scripts/test.sh") for line in lines)


def test_the_fast_loop_needs_no_system_package():
    lines = make_dry_run("test-fast")
    assert "scripts/system-deps.sh" not in lines
    assert any(line.startswith("scripts/test-fast.sh") for line in lines)
    script = (ROOT / "scripts" / "test-fast.sh").read_text()
    assert '-m "not slow and not browser" -p tests.fast_loop' in script


def test_ci_installs_nothing_that_make_test_does_not():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in ci
    assert "make test\n" in ci
