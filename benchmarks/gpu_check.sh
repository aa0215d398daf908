#!/usr/bin/env bash
# ncbench GPU check: one prepared script for a lent GPU machine (bare box, no network).
#
#   1. environment: python3 with torch (the machine's own); ncbench from this checkout via
#      PYTHONPATH (no install); Python packages missing there (duckdb) installed from the wheels
#      in .whl/ if they were carried (see below);
#   2. smoke test of `ncbench run` on CUDA: wrn50 width 0.25, bf16, 2 epochs, losses ce and mse, on
#      a CIFAR-10-format fixture (500 train / 100 test images, python pickles written here;
#      cifar10 with download = false, dataset_params = { verify = false }); asserts via
#      `ncbench sql` that every run ended `done` and that the start events recorded bf16;
#   3. benchmarks/train_throughput.py --device cuda (wrn50 0.25 and 2: reference fp32
#      DataLoader+PIL vs ncbench fp32 / bf16, channels_last, device data);
#   4. benchmarks/eval_cost.py --device cuda (one NC evaluation vs one epoch, 50k-image fixture);
#   5. if time is left: train_throughput for wrn50-0.25 with --compile;
#   then one summary table, printed and written to $OUT/gpu_check.txt when $OUT is set (with the
#   JSON results and logs in $OUT/gpu_check/).
#
# Everything runs under one time budget (GPU_CHECK_BUDGET seconds, default 480 = 8 min); each
# step gets a timeout within what is left, and a step that fails or times out does not stop the
# others; below 360 s eval_cost uses a 10k-image fixture, and the compile step only runs if time
# is left. Exit status: 0 if steps 1–4 passed, 1 otherwise (2: no CUDA and no dry run asked).
#
# On the lent machine (the repo root is the working directory; carry the duckdb wheel):
#     run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
# The wheel, made here once (CPython 3.12 there):
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 -d .whl duckdb==2.0.1
# CPU dry run (tiny sizes, no GPU needed; checks the script itself):
#     NCBENCH_GPU_CHECK_ALLOW_CPU=1 bash benchmarks/gpu_check.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
START=$SECONDS
BUDGET="${GPU_CHECK_BUDGET:-480}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ncbench-gpucheck.XXXXXX")"
STATUS="$WORK/status.tsv"
: >"$STATUS"
trap 'rm -rf "$WORK/fixture" "$WORK/smoke/.ncbench"' EXIT

log() { printf '[gpu_check %4ss] %s\n' "$((SECONDS - START))" "$*"; }
left() { echo $((BUDGET - (SECONDS - START))); }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$STATUS"; }

# run_step NAME LIMIT_S COMMAND...: run with a timeout of min(LIMIT_S, time left − 20 s);
# records ok / FAILED (rc) / TIMEOUT / skipped; never exits the script.
run_step() {
  local name="$1" limit="$2"; shift 2
  local avail=$(( $(left) - 20 ))
  if (( avail < 30 )); then
    log "$name: skipped (budget spent)"; record "$name" "skipped" "budget spent"; return 1
  fi
  (( limit > avail )) && limit=$avail
  log "$name: start (timeout ${limit}s)"
  local t0=$SECONDS rc=0
  timeout --signal=TERM --kill-after=15 "$limit" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  local dt=$((SECONDS - t0))
  if (( rc == 0 )); then
    record "$name" "ok" "${dt}s"; log "$name: ok (${dt}s)"
  elif (( rc == 124 || rc == 137 )); then
    record "$name" "TIMEOUT" "after ${dt}s"; log "$name: TIMEOUT after ${dt}s"
  else
    record "$name" "FAILED (rc $rc)" "${dt}s"; log "$name: FAILED (rc $rc) after ${dt}s"
  fi
  tail -n 25 "$WORK/$name.log" | sed 's/^/    | /'
  return $rc
}

# --- 1. environment ----------------------------------------------------------------------------
if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import torch' 2>/dev/null; then
  PY="$REPO/.venv/bin/python"
else
  PY=python3
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
NEEDED="torch torchvision numpy scipy sklearn PIL typer rich duckdb"
missing() { "$PY" - "$@" <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}
MISSING="$(missing $NEEDED)"
if [[ -n "$MISSING" ]] && compgen -G ".whl/*.whl" >/dev/null; then
  log "missing python packages: $MISSING — installing the carried wheels (.whl/) into $WORK/site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:$WORK/site"
  MISSING="$(missing $NEEDED)"
fi

CUDA="$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))')"
if [[ "$CUDA" == 1 ]]; then
  MODE=cuda
elif [[ "${NCBENCH_GPU_CHECK_ALLOW_CPU:-0}" == 1 ]]; then
  MODE=cpu
else
  echo "gpu_check: no CUDA device visible to $PY (set NCBENCH_GPU_CHECK_ALLOW_CPU=1 for a CPU dry run)" >&2
  rm -rf "$WORK"
  exit 2
fi
"$PY" - <<'EOF' | tee "$WORK/env.txt"
import datetime, os, platform, torch, torchvision
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (dry run)"
print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · {dev} · {os.cpu_count()} cores · "
      f"python {platform.python_version()} · torch {torch.__version__} · torchvision {torchvision.__version__}"
      + (f" · CUDA {torch.version.cuda} · cuDNN {torch.backends.cudnn.version()}" if torch.cuda.is_available() else ""))
EOF
log "python: $PY · mode: $MODE · budget ${BUDGET}s · work dir $WORK"
if [[ -n "$MISSING" ]]; then
  log "still missing: $MISSING (the smoke test needs duckdb: carry .whl/, see the header)"
fi

if [[ "$MODE" == cuda ]]; then
  SMOKE_NTRAIN=500; SMOKE_NTEST=100; SMOKE_DEVICE=cuda; EXPECT_PREC=bf16
  TT_ARGS=(--device cuda)
  EC_ARGS=(--device cuda)
  TC_ARGS=(--device cuda --models wrn50:0.25 --compile --rounds 1)
  LIM_SMOKE=180; LIM_TT=170; LIM_EC=200; LIM_TC=200
  if (( BUDGET < 360 )); then  # a short lease: a 10k-image eval_cost fixture (the ratio barely moves)
    EC_ARGS+=(--n-train 10000 --n-test 2000); LIM_EC=120
  fi
else  # CPU dry run: tiny sizes, same code paths
  export NCBENCH_THREADS="${NCBENCH_THREADS:-1}"
  SMOKE_NTRAIN=100; SMOKE_NTEST=40; SMOKE_DEVICE=cpu; EXPECT_PREC=fp32
  TT_ARGS=(--device cpu --models resnet18:0.125,mlp:0.5 --steps 2 --warmup 1 --rounds 1)
  EC_ARGS=(--device cpu --models mlp:0.5:digits,resnet18:0.125:cifar10 --n-train 150 --n-test 40)
  TC_ARGS=(--device cpu --models mlp:0.5 --steps 2 --warmup 1 --rounds 1 --compile)
  export NCBENCH_COMPILE_BACKEND="${NCBENCH_COMPILE_BACKEND:-aot_eager}"  # no C++ build on the CPU
  LIM_SMOKE=240; LIM_TT=120; LIM_EC=120; LIM_TC=90
fi

# --- 2. smoke test: ncbench run on the fixture ----------------------------------------------------
SMOKE="$WORK/smoke"
mkdir -p "$SMOKE"
cat >"$SMOKE/experiments.toml" <<EOF
[experiments.gpu_smoke]
dataset = "cifar10"
model = "wrn50"
width = 0.25
loss = ["ce", "mse"]
epochs = 2
eval_every = 1
batch_size = 64
precision = "bf16"
device = "$SMOKE_DEVICE"
data_root = "$WORK/fixture"
download = false
dataset_params = { verify = false }
EOF
smoke() {
  "$PY" benchmarks/eval_cost.py --write-fixture "$WORK/fixture" --n-train "$SMOKE_NTRAIN" --n-test "$SMOKE_NTEST"
  "$PY" -m ncbench run --config "$SMOKE/experiments.toml"
  "$PY" -m ncbench sql --db "$SMOKE/ncbench.duckdb" --format csv \
    "SELECT r.run_id, r.loss, r.status, r.device, res.final_epoch, res.final_train_acc, res.final_test_acc, res.final_nc1 FROM runs r JOIN results res USING (run_id) ORDER BY r.loss" \
    | tee "$WORK/smoke_runs.csv"
  "$PY" -m ncbench sql --db "$SMOKE/ncbench.duckdb" --format csv \
    "SELECT run_id, epoch, epoch_seconds, eval_seconds FROM epochs ORDER BY run_id, epoch" \
    >"$WORK/smoke_epochs.csv"
  "$PY" - "$WORK/smoke_runs.csv" "$SMOKE/.ncbench/runs" "$EXPECT_PREC" "$WORK/smoke_check.json" <<'EOF'
import csv, json, sys
from pathlib import Path
rows = list(csv.DictReader(open(sys.argv[1])))
runs_dir, expect = Path(sys.argv[2]), sys.argv[3]
assert len(rows) == 2, f"expected 2 runs, found {len(rows)}"
bad = [r for r in rows if r["status"] != "done"]
assert not bad, f"runs not done: {bad}"
starts = {}
for r in rows:
    events = [json.loads(l) for l in (runs_dir / r["run_id"] / "events.jsonl").read_text().splitlines() if l.strip()]
    start = [e for e in events if e.get("type") == "start"][-1]
    starts[r["run_id"]] = {k: start.get(k) for k in ("device", "precision", "precision_requested", "channels_last", "compile")}
    assert start.get("precision") == expect, f"run {r['run_id']}: start event precision {start.get('precision')!r}, expected {expect!r}"
    lines = [l for l in (runs_dir / r["run_id"] / "worker.log").read_text().splitlines() if "eval " in l and "epoch" in l]
    assert lines, f"run {r['run_id']}: no eval-cost line in worker.log"
    print(lines[-1])
json.dump({"runs": rows, "starts": starts}, open(sys.argv[4], "w"), indent=1)
print("smoke: all runs done; start events:", starts)
EOF
}
export PY WORK SMOKE EXPECT_PREC SMOKE_NTRAIN SMOKE_NTEST
export -f smoke
FAILED=0
run_step smoke "$LIM_SMOKE" bash -c 'set -euo pipefail; smoke' || FAILED=1

# --- 3.–5. benchmarks -----------------------------------------------------------------------------
run_step train_throughput "$LIM_TT" "$PY" benchmarks/train_throughput.py "${TT_ARGS[@]}" --json "$WORK/train_throughput.json" || FAILED=1
run_step eval_cost "$LIM_EC" "$PY" benchmarks/eval_cost.py "${EC_ARGS[@]}" --json "$WORK/eval_cost.json" || FAILED=1
run_step train_throughput_compile "$LIM_TC" "$PY" benchmarks/train_throughput.py "${TC_ARGS[@]}" --json "$WORK/train_throughput_compile.json" || true

# --- summary ----------------------------------------------------------------------------------------
"$PY" - "$WORK" "$((SECONDS - START))" <<'EOF' | tee "$WORK/summary.txt"
import csv, json, sys
from pathlib import Path
w, elapsed = Path(sys.argv[1]), sys.argv[2]
def load(name):
    p = w / name
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None
print("=" * 100)
print("ncbench gpu_check summary ·", (w / "env.txt").read_text().strip(), f"· {elapsed} s in all")
print("-" * 100)
print(f"{'step':28s} {'result':16s} time")
for line in (w / "status.tsv").read_text().splitlines():
    name, result, note = line.split("\t")
    print(f"{name:28s} {result:16s} {note}")
sc = load("smoke_check.json")
if sc:
    cost = {}
    try:
        for e in csv.DictReader(open(w / "smoke_epochs.csv")):
            if e["epoch_seconds"] and e["eval_seconds"]:
                cost[e["run_id"]] = float(e["eval_seconds"]) / float(e["epoch_seconds"])
    except OSError:
        pass
    print("-" * 100)
    print("smoke (wrn50-0.25, 2 epochs):")
    for r in sc["runs"]:
        st = sc["starts"].get(r["run_id"], {})
        print(f"  {r['loss']:4s} {r['status']:5s} device {st.get('device')} precision {st.get('precision')} "
              f"(asked {st.get('precision_requested')}) channels_last {st.get('channels_last')} · "
              f"train_acc {float(r['final_train_acc'] or 'nan'):.3f} test_acc {float(r['final_test_acc'] or 'nan'):.3f} "
              f"nc1 {float(r['final_nc1'] or 'nan'):.3g} · last eval = {cost.get(r['run_id'], float('nan')):.2f} epoch")
for name in ("train_throughput.json", "train_throughput_compile.json"):
    tt = load(name)
    if tt:
        print("-" * 100)
        print(f"{name[:-5]}: images/s (× reference measured in the same run)")
        for r in tt["rows"]:
            extra = f"  [compile fell back: {r['compile_failed']}]" if r.get("compile_failed") else ""
            print(f"  {r['model'] + '-' + format(r['width'], 'g'):14s} b{r['batch']:<4d} {r['variant']:50s} "
                  f"{r['images_per_s']:10,.0f} {r['ratio']:6.2f}×{extra}")
ec = load("eval_cost.json")
if ec:
    print("-" * 100)
    print("eval_cost: one evaluation (train+test NC passes, val acc) vs one training epoch (last epoch)")
    for r in ec["rows"]:
        p = r["parts"]
        print(f"  {r['model'] + '-' + format(r['width'], 'g'):14s} {r['dataset']:8s} {r['precision']:5s} "
              f"epoch {r['epoch_seconds'][-1]:7.2f} s  eval {r['eval_seconds'][-1]:7.2f} s  "
              f"= {r['fraction']:.2f} epoch ({r['fraction'] / 5:.2f} at eval_every 5) · passes "
              + " / ".join(f"{k} {p[k]:.2f}s" for k in ("train", "test", "val") if k in p)
              + f" · NC {p.get('nc_share', float('nan')):.0%} of the train pass")
print("=" * 100)
EOF

if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/gpu_check"
  cp "$WORK/summary.txt" "$OUT/gpu_check.txt"
  cp "$WORK"/*.json "$WORK"/*.log "$WORK"/*.csv "$WORK/env.txt" "$OUT/gpu_check/" 2>/dev/null || true
  for d in "$SMOKE"/.ncbench/runs/*/; do
    [[ -f "$d/worker.log" ]] && cp "$d/worker.log" "$OUT/gpu_check/worker-$(basename "$d").log"
  done
  log "summary written to $OUT/gpu_check.txt"
fi
if [[ -n "${OUT:-}" && "${GPU_CHECK_KEEP:-0}" != 1 ]]; then
  rm -rf "$WORK"
  log "done in $((SECONDS - START))s"
else
  log "done in $((SECONDS - START))s (work dir $WORK)"
fi
exit "$FAILED"
