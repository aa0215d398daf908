"""Plug-ins ("package.module:callable" losses/models/datasets): found beside the experiments.toml
without PYTHONPATH, in the manager and in workers started from another cwd; clear messages for a
missing module, a misspelt function, a non-callable and a wrong signature."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _runkit import ncbench, query

from ncbench.config import expand, load_config
from ncbench.errors import ParameterError, UnknownNameError
from ncbench.registry import add_plugin_dir, import_callable

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plugins"

PLUGIN = '''
import torch.nn.functional as F

NOT_A_FUNCTION = 3

def make_hinge(num_classes, margin=1.0):
    def loss(logits, target):
        return F.multi_margin_loss(logits, target, margin=margin)
    return loss

def make_two_args(a, b):
    return None
'''


def _plugin_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(PLUGIN)
    add_plugin_dir(folder)
    return folder


def test_missing_module_names_module_and_folders_searched(tmp_path):
    folder = _plugin_folder(tmp_path, "plugmiss")
    with pytest.raises(UnknownNameError) as exc:
        import_callable("no_such_pkg_xyz.losses:make_hinge", "loss")
    msg = str(exc.value)
    assert "module 'no_such_pkg_xyz' not found" in msg and str(folder) in msg
    assert "known:" not in msg


def test_misspelt_function_suggests_the_public_callable(tmp_path):
    _plugin_folder(tmp_path, "plugspell")
    with pytest.raises(UnknownNameError) as exc:
        import_callable("plugspell:make_hinj", "loss")
    msg = str(exc.value)
    assert "has no attribute 'make_hinj'" in msg and "did you mean 'make_hinge'" in msg


def test_not_callable_and_wrong_signature_are_told_apart(tmp_path):
    _plugin_folder(tmp_path, "plugsig")
    with pytest.raises(ParameterError, match="not a callable"):
        import_callable("plugsig:NOT_A_FUNCTION", "loss")
    with pytest.raises(ParameterError, match="is called as f\\(num_classes=K"):
        import_callable("plugsig:make_two_args", "loss")
    assert callable(import_callable("plugsig:make_hinge", "loss"))


def test_expand_records_the_config_folder_as_a_placement_key(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "a")
    shutil.copytree(EXAMPLE, tmp_path / "b")
    a = expand(load_config(tmp_path / "a" / "experiments.toml"))
    b = expand(load_config(tmp_path / "b" / "experiments.toml"))
    assert {s.plugin_dir for s in a} == {str(tmp_path / "a")}
    assert [s.run_id for s in a] == [s.run_id for s in b]  # not part of the run id


def test_cli_misspelt_plugin_is_one_line_with_a_suggestion(tmp_path):
    folder = _plugin_folder(tmp_path, "plugcli")
    cfg = folder / "experiments.toml"
    cfg.write_text((EXAMPLE / "experiments.toml").read_text()
                   .replace("my_plugins:make_hinge", "plugcli:make_hinj")
                   .replace('"my_plugins:make_tiny_mlp"', '"mlp"').replace("{ hidden = 32 }", "{}"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = ncbench("run", "--config", str(cfg), "--dry-run", cwd=elsewhere)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "did you mean 'make_hinge'" in out.stderr and "Traceback" not in out.stderr


def test_shipped_example_dry_run(tmp_path):
    out = ncbench("run", "--config", str(EXAMPLE / "experiments.toml"), "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 of 2 runs would run" in out.stdout


def test_shipped_example_trains_from_another_cwd(tmp_path):
    """A real 1-epoch digits run of the example, copied to a temp folder and run from elsewhere:
    the workers (subprocesses, cwd not the config's folder, no PYTHONPATH to it) import it."""
    cfg_dir = tmp_path / "project"
    shutil.copytree(EXAMPLE, cfg_dir, ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = ncbench("run", "--config", str(cfg_dir / "experiments.toml"), cwd=elsewhere)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 done" in out.stdout
    rows = query(cfg_dir / "ncbench.duckdb", "SELECT loss, status FROM runs ORDER BY loss")
    assert rows == [("ce", "done"), ("my_plugins:make_hinge", "done")]
