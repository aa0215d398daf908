"""Hostile `ncbench run` / `ncbench run --dry-run` command lines through the real CLI (#15: "75
bad CLI calls: 3 tracebacks", e.g. `--workdir` naming an existing file → FileExistsError).

Each call is a real subprocess with a timeout: it exits 0 (a dry run of a valid grid) or 2 (a
one-line error), never prints a traceback, never hangs, and creates or changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _runkit import env

LONG = "x" * 300  # longer than a file name may be
CONFIG = ('[experiments.a]\ndataset = "gaussian"\n'
          'dataset_params = { num_classes = 4, dim = 8, n_train_per_class = 40, n_test_per_class = 20 }\n'
          'model = "mlp"\nwidth = 0.125\nloss = "ce"\nepochs = 1\ndevice = "cpu"\n')

#: (arguments after `ncbench run`, expected exit code). Most fail before torch is imported; the
#: GPU checks that need torch are in test_local_executor.
CORPUS: list[tuple[list[str], int]] = [
    (["--dry-run", "--workdir", "new/deeper"], 0),  # valid (imports torch: the one slow call)
    (["--workdir", "afile"], 2),  # FileExistsError before
    (["--workdir", "afile/sub", "--dry-run"], 2),  # NotADirectoryError before
    (["--workdir", LONG, "--dry-run"], 2),  # OSError: File name too long before
    (["--db", "afile/r.duckdb"], 2),
    (["--db", "."], 2),
    (["--db", LONG + ".duckdb", "--dry-run"], 2),
    (["--config", "."], 2),
    (["--config", "missing.toml", "--dry-run"], 2),
    (["--config", "afile/x.toml"], 2),
    (["--config", LONG + ".toml"], 2),
    (["--config", "afile"], 2),  # an empty file: no experiments
    (["--workers", "0"], 2),
    (["--workers", "-3", "--dry-run"], 2),
    (["--workers", "two", "--dry-run"], 2),
    (["--per-gpu", "0", "--dry-run"], 2),
    (["--retries", "-1", "--dry-run"], 2),
    (["--gpus", "x,y", "--dry-run"], 2),
    (["--executor", "nope", "--dry-run"], 2),
    (["--executor", "slurm", "--slurm-time", "0", "--dry-run"], 2),
    (["--executor", "slurm", "--slurm-mem-gb", "nan", "--dry-run"], 2),
    (["--executor", "slurm", "--workers", "2", "--dry-run"], 2),
    (["--slurm-mem-gb", "4", "--dry-run"], 2),  # a Slurm flag with the local executor
    (["nosuch", "--dry-run"], 2),
    (["", "--dry-run"], 2),
]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def test_hostile_run_command_lines_exit_cleanly_and_change_nothing(tmp_path):
    (tmp_path / "experiments.toml").write_text(CONFIG)
    (tmp_path / "afile").write_text("")
    before = _tree(tmp_path)
    e = {**env(), "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}

    def call(args: list[str]) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([sys.executable, "-m", "ncbench", "run", *args], cwd=tmp_path,
                                  env=e, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ncbench run {args!r} hung (over 60 s)")

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(call, [args for args, _ in CORPUS]))
    problems = []
    for (args, expected), out in zip(CORPUS, outs):
        text = out.stdout + out.stderr
        if out.returncode != expected or "Traceback" in text:
            problems.append(f"ncbench run {' '.join(args)[:80]!r}: exit {out.returncode} "
                            f"(expected {expected})\n{text[-600:]}")
        elif expected == 2 and not ("error:" in out.stderr or "Usage:" in out.stderr):
            problems.append(f"ncbench run {' '.join(args)[:80]!r}: no error message\n{text[-600:]}")
    assert not problems, "\n\n".join(problems)
    assert _tree(tmp_path) == before  # nothing created, nothing changed
