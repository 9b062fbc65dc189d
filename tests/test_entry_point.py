"""The ``skysift`` entry point ends the process itself (``terminal.run_and_exit``): what
``sys.exit`` guarantees must still hold when its output is read through a pipe."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import atexit, sys, threading, time, click
from skysift.cli.terminal import run_and_exit

atexit.register(lambda: print("exit handler ran", file=sys.stderr))

@click.command()
@click.argument("how")
def command(how):
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished", file=sys.stderr))).start()
    sys.stdout.write("x" * 300_000 + "\\n")  # more than a pipe holds: flushed before the process ends
    if how == "status":
        raise SystemExit(3)
    if how == "message":
        sys.exit("a one-line reason")

run_and_exit(command)
"""


@pytest.mark.parametrize(("how", "status", "message"), [("ok", 0, ""), ("status", 3, ""),
                                                        ("message", 1, "a one-line reason")])
def test_the_entry_point_exits_as_sys_exit_does(how, status, message):
    done = subprocess.run([sys.executable, "-c", PROGRAM, how], capture_output=True, text=True, timeout=60)
    assert done.returncode == status
    assert done.stdout == "x" * 300_000 + "\n"
    assert "thread finished" in done.stderr and done.stderr.rstrip().endswith("exit handler ran")
    assert message in done.stderr


def test_usage_errors_keep_status_2_through_the_console_script():
    done = subprocess.run([sys.executable, "-c", "from skysift.cli.main import main; main()", "run"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Missing argument" in done.stderr
