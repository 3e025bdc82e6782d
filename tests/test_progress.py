"""Progress of ``klarefi_reprocess`` and ``klarefi_prune_events``.

A bar on a terminal (a real pseudo-terminal here) when tqdm is installed; plain periodic
lines otherwise; nothing with ``--quiet`` or ``-v 0``. Progress goes to stderr, the
listing stays on stdout. Memory stays bounded however many events are reprocessed.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from django_klarefi.models import Event
from django_klarefi.progress import Progress, duration_text
from tests.servers import ROOT, subprocess_env
from tests.test_prune_command import events as stored

pytestmark = pytest.mark.django_db(transaction=True)

Status = Event.Status


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- The plain lines, in process -----------------------------------------------------------


def test_plain_lines_come_every_interval_with_rate_and_time_left_then_a_final_line():
    clock, stream = FakeClock(), io.StringIO()
    with Progress(1000, stream=stream, description="prune", interval=10, clock=clock) as progress:
        clock.now += 4
        progress.advance(100)  # 4 s: no line yet
        assert stream.getvalue() == ""
        clock.now += 6
        progress.advance(150)  # 10 s: 250 done at 25/s, 750 left
        clock.now += 5
        progress.advance(250)  # 5 s since the last line: none
        clock.now += 25
        progress.advance(500)

    assert stream.getvalue().splitlines() == [
        "prune: 250 of 1000 events (25%), 25/s, about 30s left",
        "prune: 1000 of 1000 events (100%), 25/s, done in 40s",
    ]


def test_no_output_when_disabled_or_when_there_is_nothing_to_do():
    stream = io.StringIO()
    with Progress(10, stream=stream, description="prune", enabled=False) as progress:
        progress.advance(10)
    with Progress(0, stream=stream, description="prune") as progress:
        pass
    assert stream.getvalue() == ""


def test_durations_read_the_short_way():
    assert [duration_text(s) for s in (0.4, 45, 104, 7500)] == ["0s", "45s", "1m 44s", "2h 05m"]


# -- The commands, as separate processes -------------------------------------------------------


def run(*args, terminal: bool, without_tqdm: Path | None = None):
    """Run a command; its (stdout, stderr). ``terminal``: stderr is a pseudo-terminal."""
    env = subprocess_env(COLUMNS="100", LINES="30")
    if without_tqdm is not None:
        # A "tqdm" that cannot be imported, ahead of the real one.
        (without_tqdm / "tqdm").mkdir()
        (without_tqdm / "tqdm" / "__init__.py").write_text("raise ImportError('no tqdm here')\n")
        env["PYTHONPATH"] = str(without_tqdm) + os.pathsep + env["PYTHONPATH"]
    command = [sys.executable, "-m", "django", *args]
    if not terminal:
        finished = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        return finished.stdout, finished.stderr
    controller, terminal_end = pty.openpty()
    # 30 rows of 100 columns: a fresh pseudo-terminal has no size at all.
    fcntl.ioctl(terminal_end, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the last writer closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        process = subprocess.run(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=terminal_end, timeout=300
        )
    finally:
        os.close(terminal_end)
        reader.join(timeout=30)
        os.close(controller)
    return process.stdout.decode(), b"".join(chunks).decode()


def test_prune_shows_a_bar_on_a_terminal(tmp_path):
    stored(50)
    stdout, terminal = run(
        "klarefi_prune_events", "--older-than", "90d", "--batch-size", "10", terminal=True
    )

    # tqdm's bar, redrawn in place: rows done of the total, the rate and the time left.
    assert "\r" in terminal
    assert "prune: 100%" in terminal
    assert "50/50 [" in terminal
    assert " events/s]" in terminal
    assert "<00:00" in terminal  # elapsed<remaining
    assert "batch 5: deleted 10 processed (50 of 50)" in stdout
    assert not Event.objects.exists()


def test_reprocess_shows_a_bar_on_a_terminal(tmp_path):
    stored(30, Status.FAILED)
    stdout, terminal = run("klarefi_reprocess", "--failed", terminal=True)

    assert "reprocess: 100%" in terminal
    assert "30/30 [" in terminal
    assert stdout.count("processed          evt_failed_100d_") == 30
    assert "Summary: 30 events, 30 processed" in stdout


def test_without_a_terminal_progress_is_plain_lines(tmp_path):
    stored(40)
    stdout, stderr = run("klarefi_prune_events", "--older-than", "90d", terminal=False)

    assert "\r" not in stderr
    [line] = stderr.splitlines()  # a short run: only the final line
    assert line.startswith("prune: 40 of 40 events (100%), ")
    assert ", done in " in line
    assert "Deleted 40 events" in stdout


def test_without_tqdm_a_terminal_gets_plain_lines_too(tmp_path):
    stored(20, Status.FAILED)
    stdout, terminal = run("klarefi_reprocess", "--failed", terminal=True, without_tqdm=tmp_path)

    assert "\r" not in terminal.replace("\r\n", "\n")
    assert [line for line in terminal.splitlines() if line.strip()] == [
        line for line in terminal.splitlines() if line.startswith("reprocess: 20 of 20 events")
    ]
    assert terminal.strip()
    assert "Summary: 20 events, 20 processed" in stdout


@pytest.mark.parametrize("quiet", [["--quiet"], ["-v", "0"]])
def test_quiet_and_verbosity_zero_turn_progress_off(quiet):
    stored(15)
    stored(15, Status.FAILED, prefix="evt_failed")

    _, prune_terminal = run("klarefi_prune_events", "--older-than", "90d", *quiet, terminal=True)
    _, reprocess_stderr = run("klarefi_reprocess", "--failed", *quiet, terminal=False)

    assert prune_terminal == ""
    assert reprocess_stderr == ""
    assert Event.objects.filter(status=Status.PROCESSED).count() == 15


# -- Memory stays bounded ----------------------------------------------------------------


# Run in a process of its own, so that nothing another test left connected (a receiver
# that keeps the events it sees, say) is counted against the command.
PEAK_SCRIPT = """
import os, tracemalloc, django
django.setup()
from django.core.management import call_command
with open(os.devnull, "w") as discard:
    tracemalloc.start()
    call_command("klarefi_reprocess", "--failed", stdout=discard, stderr=discard)
    print(tracemalloc.get_traced_memory()[1])
"""


def peak_reprocessing(count: int) -> int:
    """tracemalloc's peak while ``klarefi_reprocess --failed`` runs over ``count`` events."""
    Event.objects.all().delete()
    stored(count, Status.FAILED, prefix=f"evt_mem_{count}")
    finished = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert Event.objects.filter(status=Status.PROCESSED).count() == count
    return int(finished.stdout.split()[-1])


@pytest.mark.slow
def test_reprocess_memory_does_not_grow_with_the_number_of_events():
    # processing.CHUNK_SIZE is 500: 600 events are 2 chunks, 2,400 are 5.
    few, many = peak_reprocessing(600), peak_reprocessing(2400)

    assert many < few * 1.5, (few, many)
