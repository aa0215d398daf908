"""`ncbench run` end to end, as a subprocess on a tiny experiment, checked through SQL."""

from __future__ import annotations

import math

from _runkit import experiment, events, ncbench, of_type, query, run_dirs, write_config

from ncbench.schema import EPOCH_METRICS

NC = ("nc1", "nc2", "nc3", "nc4", "nc2_centered", "nc3_centered")


def test_run_then_rerun_trains_nothing(tmp_path):
    cfg = write_config(tmp_path, experiment("tiny", losses=("ce", "mse"), epochs=2, eval_every=1))
    db = tmp_path / "ncbench.duckdb"
    dry = ncbench("run", "--config", str(cfg), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.count(" start") == 2 and "2 of 2 runs would run" in dry.stdout
    assert not db.exists() and not (tmp_path / ".ncbench").exists()  # a dry run writes nothing

    out = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 done" in out.stdout

    runs = query(db, "SELECT run_id, status, executor, slot, attempt, host, device, heartbeat_at, "
                     "started_at, finished_at, error FROM runs ORDER BY loss")
    assert len(runs) == 2
    for run_id, status, executor, slot, attempt, host, device, beat, started, finished, error in runs:
        assert status == "done" and error is None
        assert executor == "local" and slot == "cpu0" and attempt == 1
        assert host and device == "cpu" and beat is not None and started <= finished

    cols = [c for (c,) in query(db, "SELECT column_name FROM (DESCRIBE epochs)")]
    assert set(EPOCH_METRICS) <= set(cols)
    rows = query(db, f"SELECT run_id, epoch, {', '.join(EPOCH_METRICS)} FROM epochs ORDER BY run_id, epoch")
    assert [(r[1]) for r in rows] == [0, 1, 2, 0, 1, 2]  # epoch 0: the untrained network
    for r in rows:
        values = dict(zip(EPOCH_METRICS, r[2:]))
        assert (values["epoch_seconds"] is None) == (r[1] == 0)  # no training before epoch 0
        for name in NC + tuple("test_" + n for n in NC):
            assert values[name] is not None and math.isfinite(values[name]), (name, values[name])
        assert 0 <= values["train_acc"] <= 1 and 0 <= values["test_acc"] <= 1
    results = query(db, "SELECT run_id, best_val_acc, test_acc_at_best_val, final_nc1 FROM results")
    assert len(results) == 2 and all(r[2] is not None for r in results)
    n_metrics = query(db, "SELECT count(*) FROM metrics")[0][0]
    assert n_metrics == 2 * (3 * len(EPOCH_METRICS) - 1)  # epoch 0 has no epoch_seconds
    logs = {d.name: len(events(d)) for d in run_dirs(tmp_path / ".ncbench")}

    dry = ncbench("run", "--config", str(cfg), "--dry-run", cwd=tmp_path)
    assert dry.stdout.count("skip (done)") == 2 and "0 of 2 runs would run" in dry.stdout

    again = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 skipped" in again.stdout
    assert query(db, "SELECT count(*) FROM metrics")[0][0] == n_metrics
    assert {d.name: len(events(d)) for d in run_dirs(tmp_path / ".ncbench")} == logs  # nothing started
    assert all(len(of_type(d, "start")) == 1 for d in run_dirs(tmp_path / ".ncbench"))


def test_bad_config_exits_2_and_stores_nothing(tmp_path):
    cfg = write_config(tmp_path, experiment("tiny", extra="lernrate = 0.1"))
    out = ncbench("run", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 2
    assert "lernrate" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "ncbench.duckdb").exists() and not (tmp_path / ".ncbench").exists()


def test_piped_summary_keeps_every_column_labelled(tmp_path):
    """Piped at 80 columns (a log, CI): the summary keeps every column and the whole run label;
    the accuracies are labelled ("test @ best val", "final test") and in percent; "1 run"."""
    long = "a_rather_long_experiment_name_for_the_summary"
    cfg = write_config(tmp_path, experiment(long, losses=("ce",), epochs=2, eval_every=1))
    out = ncbench("run", "--config", str(cfg), cwd=tmp_path, COLUMNS="80")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    done = next(ln for ln in lines if ln.startswith("done "))
    assert "final test " in done and "%" in done and "test_acc=" not in done
    row = next(ln for ln in lines if f"{long}/gaussian/mlp/ce/w0.125/e2/s0" in ln
               and ln.startswith("│"))  # the summary's row, label not cut
    assert "…" not in row and row.count("%") == 4 and "done" in row and "2/2" in row
    header = "\n".join(lines[lines.index(row) - 4:lines.index(row)])
    for word in ("run", "status", "epoch", "final", "train", "best", "val", "test @", "nc1"):
        assert word in header, word
    [(final_test, at_best),] = query(tmp_path / "ncbench.duckdb",
                                     "SELECT final_test_acc, test_acc_at_best_val FROM results")
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[-3:-1] == [f"{100 * at_best:.1f}%", f"{100 * final_test:.1f}%"]
    assert "1 run: 1 done" in out.stdout and "1 runs" not in out.stdout
    dry = ncbench("run", "--config", str(cfg), "--dry-run", cwd=tmp_path)
    assert "0 of 1 run would run" in dry.stdout


def test_dry_run_with_a_file_that_is_no_database_fails_like_a_real_run(tmp_path):
    """Issue 14: `run --dry-run --db not-a-database` must say what a real run says (exit 2)."""
    cfg = write_config(tmp_path, experiment("tiny", losses=("ce",), epochs=1))
    junk = tmp_path / "not-a-database"
    junk.write_text("this is not a DuckDB file\n")
    for extra in (["--dry-run"], []):
        out = ncbench("run", "--config", str(cfg), "--db", str(junk), *extra, cwd=tmp_path)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "not a readable ncbench database" in out.stderr and "Traceback" not in out.stderr
        assert junk.read_text() == "this is not a DuckDB file\n"
        if extra:  # the dry run wrote nothing
            assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments.toml", junk.name]
