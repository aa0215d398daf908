"""Start-up feedback of a tty `ncbench run`: a line at once, before the workers start (issue 14,
item 8), run under a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

from _runkit import env, experiment, of_type, run_dirs, write_config


def _started(workdir) -> bool:
    return workdir.exists() and any(of_type(d, "start") for d in run_dirs(workdir))


def test_a_tty_run_says_it_is_checking_before_the_workers_start(tmp_path):
    cfg = write_config(tmp_path, experiment("tiny", losses=("ce",), epochs=1))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ncbench", "run", "--config", str(cfg)],
                            cwd=tmp_path, env=env(TERM="xterm", COLUMNS="100"),
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out, first, started_at_first = b"", None, None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            visible = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", chunk)  # no cursor codes
            if first is None and visible.strip():
                first, started_at_first = visible, _started(tmp_path / ".ncbench")
            out += chunk
    finally:
        proc.wait(timeout=60)
        os.close(master)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert first is not None
    assert b"checking" in first, first
    assert started_at_first is False  # no worker had written its start event yet
    assert "1 run" in text and "done" in text
