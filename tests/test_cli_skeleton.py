"""The project skeleton: the console script, `python -m ncbench`, and the README/CI contract."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_top_has_two_commands():
    """The README opens with set-up + main job, then set-up + tests, within its first screen."""
    cmds = _readme_commands()
    assert len(cmds) >= 2
    main_job, tests = cmds[0], cmds[1]
    assert main_job.startswith("python3 -m venv .venv && ") and main_job.endswith("ncbench run")
    assert tests.startswith("python3 -m venv .venv && ") and "-m pytest" in tests
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:30])
    assert main_job in head and tests in head


def test_ci_runs_exactly_the_readme_test_command():
    tests_cmd = _readme_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert tests_cmd.strip() in ci_lines


def test_python_m_ncbench_help():
    out = subprocess.run([sys.executable, "-m", "ncbench", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ncbench" in out.stdout.lower()


def test_help_does_not_import_torch():
    code = "import sys; from ncbench.cli import app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_help_shows_flags_as_flags():
    """Every command's --help: a flag (--dry-run, --json, --help) shows no "<bool>" value
    placeholder, while options that take a value keep theirs (issue 14)."""
    from ncbench.cli import app

    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert {"run", "status", "report"} <= set(names)
    for name in [None, *names]:
        args = [sys.executable, "-m", "ncbench", *([name] if name else []), "--help"]
        out = subprocess.run(args, capture_output=True, text=True, env={**_env(), "COLUMNS": "200"})
        assert out.returncode == 0, out.stderr
        assert "<bool>" not in out.stdout, name
        assert "--help" in out.stdout
    run_help = subprocess.run([sys.executable, "-m", "ncbench", "run", "--help"], capture_output=True,
                              text=True, env={**_env(), "COLUMNS": "200"}).stdout
    assert re.search(r"--dry-run\s+Show what would run", run_help)
    assert re.search(r"--config\s+-c\s+<path>", run_help)


def _env() -> dict:
    import os

    return dict(os.environ)


def test_plural_helper():
    from ncbench.errors import plural

    assert [plural(n, "run") for n in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]
    assert plural(1, "match", "matches") == "1 match" and plural(3, "match", "matches") == "3 matches"
