#!/usr/bin/env bash
# tuner's GPU figures in one go, written under bench/results/gpu-check/ (<= 8 min on one H100/H200).
#
#   bash bench/gpu_check.sh                        on a CUDA machine (any working directory)
#   WHEELS=/path/to/wheels bash bench/gpu_check.sh where only torch and transformers are installed:
#                                                  the rest is installed from the wheel folder with
#                                                  pip --no-index --target $DEPS_DIR, put on PYTHONPATH
#   bash bench/gpu_check.sh --dry-run              every step at nano scale on a CPU (plumbing smoke)
#   bash bench/gpu_check.sh --build-wheels DIR     (with internet) fill DIR with the wheels WHEELS needs
#
# Steps: (1) dependencies, (2) environment, (3) bench/throughput.py: tuner vs a bare loop vs the HF
# Trainer on GPT-2 base, seq 1024, batch 16, bf16, eager and compiled, micro-batch auto; MFU in
# both FLOP conventions against the data-sheet and the measured bf16 peak; (4) bench/gpu_study.py:
# lm_small on a grid of 8 trials with 1 and 4 workers on one GPU; (5) summary.md: every goal line
# and the time each step took. Environment knobs: PYTHON, OUT, DEPS_DIR, THROUGHPUT_ARGS,
# STUDY_ARGS, THROUGHPUT_TIMEOUT (s), STUDY_TIMEOUT (s).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-python}"
MODE=gpu

requirements() {  # tuner's dependencies less torch and transformers (and what they bring)
  "$PY" - <<'EOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
skip = {"torch", "transformers"}
for dep in deps:
    if re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0].strip().lower() not in skip:
        print(dep)
EOF
}

missing() {  # the requirements in file $1 that this Python does not satisfy yet
  "$PY" - "$1" <<'EOF'
import sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:  # packaging comes with transformers; without it, presence is the test
    Requirement = None
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    if Requirement is None:
        name, spec = line.split(">")[0].split("<")[0].split("=")[0].strip(), None
    else:
        req = Requirement(line)
        name, spec = req.name, req.specifier
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        print(line)
        continue
    if spec is not None and not spec.contains(version, prereleases=True):
        print(line)
EOF
}

prune() {  # remove from $1 what this Python (without $1) already has: no shadowed copies
  "$PY" - "$1" <<'EOF'
import csv, shutil, sys
from importlib import metadata
from pathlib import Path
target = Path(sys.argv[1])
for info in sorted(target.glob("*.dist-info")):
    name = metadata.Distribution.at(info).metadata["Name"]
    try:
        metadata.version(name)  # installed already, outside the target
    except metadata.PackageNotFoundError:
        continue
    folders = set()
    with open(info / "RECORD", newline="") as rows:
        for row in csv.reader(rows):
            path = (target / row[0]).resolve() if row else target
            if path.is_file() and target.resolve() in path.parents:
                path.unlink()
                folders.update(p for p in path.parents if target.resolve() in p.parents)
    shutil.rmtree(info, ignore_errors=True)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        pycache = folder / "__pycache__"
        if pycache.is_dir() and not any(f.suffix != ".pyc" for f in pycache.iterdir()):
            shutil.rmtree(pycache)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    print(f"kept the installed {name}, not the wheel folder's")
EOF
}

case "${1:-}" in
  "") ;;
  --dry-run) MODE=dry ;;
  --build-wheels)
    DIR="${2:?usage: bench/gpu_check.sh --build-wheels DIR}"
    mkdir -p "$DIR"
    requirements > "$DIR/requirements.txt"
    # run with the GPU machine's Python minor version and platform, or add
    # --python-version 3.11 --platform manylinux2014_x86_64 --only-binary=:all: to both lines
    "$PY" -m pip download -d "$DIR" -r "$DIR/requirements.txt" ${PIP_DOWNLOAD_ARGS:-}
    "$PY" -m pip download -d "$DIR" --no-deps "accelerate>=1.0" ${PIP_DOWNLOAD_ARGS:-}
    echo "wheels for tuner's dependencies (less torch and transformers) in $DIR"
    exit 0 ;;
  -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
  *) echo "usage: bench/gpu_check.sh [--dry-run | --build-wheels DIR]" >&2; exit 2 ;;
esac

if [[ $MODE == dry ]]; then  # a loaded CPU may be slow: the limits only keep the script finite
  OUT="${OUT:-$REPO/bench/results/gpu-check-dry-run}"; LIMIT_THROUGHPUT=900; LIMIT_STUDY=900
else
  OUT="${OUT:-$REPO/bench/results/gpu-check}"; LIMIT_THROUGHPUT=330; LIMIT_STUDY=200
fi
mkdir -p "$OUT"
export TUNER_BENCH_RESULTS="$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
START=$SECONDS
declare -a TIMES=()
echo "# gpu_check ($MODE) $(date -u +%Y-%m-%dT%H:%M:%SZ), results in $OUT"

# ---------------------------------------------------------------- 1. dependencies
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n "${WHEELS:-}" ]]; then
  DEPS="${DEPS_DIR:-${TMPDIR:-/tmp}/tuner-gpu-deps}"
  requirements > "$OUT/requirements.txt"
  missing "$OUT/requirements.txt" > "$OUT/requirements-missing.txt"
  if [[ -s "$OUT/requirements-missing.txt" ]]; then
    echo "installing from $WHEELS into $DEPS: $(tr '\n' ' ' < "$OUT/requirements-missing.txt")"
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --target "$DEPS" \
      -r "$OUT/requirements-missing.txt"
    prune "$DEPS"  # pip --target ignores what is installed and would shadow it on PYTHONPATH
  fi
  if ! "$PY" -c "import accelerate" 2>/dev/null; then  # the HF Trainer's; its deps pull torch
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --target "$DEPS" --no-deps \
      "accelerate>=1.0"
  fi
  export PYTHONPATH="$REPO:$DEPS${PYTHONPATH#"$REPO"}"
fi
TIMES+=("dependencies: $((SECONDS - START)) s")

# ---------------------------------------------------------------- 2. environment
"$PY" - <<'EOF'
import torch, transformers, tuner
cuda = torch.cuda.is_available()
print(f"python torch {torch.__version__} (CUDA {torch.version.cuda}), transformers "
      f"{transformers.__version__}, tuner from {tuner.__file__}")
for i in range(torch.cuda.device_count() if cuda else 0):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,driver_version,memory.total \
  --format=csv,noheader || true
if [[ $MODE == gpu ]] && ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device here: run with --dry-run for the CPU smoke" >&2
  exit 1
fi

phase() {  # phase NAME TIMEOUT CMD...: run, time, never stop the script
  local name=$1 limit=$2 t0=$SECONDS rc=0
  shift 2
  echo
  echo "## $name: $*"
  timeout "$limit" "$@" || rc=$?
  local took=$((SECONDS - t0))
  if [[ $rc == 124 ]]; then TIMES+=("$name: $took s (stopped at its $limit s limit)")
  elif [[ $rc != 0 ]]; then TIMES+=("$name: $took s (failed, exit $rc)")
  else TIMES+=("$name: $took s"); fi
}

# ---------------------------------------------------------------- 3. throughput and MFU
if [[ $MODE == gpu ]]; then
  read -r -a T_ARGS <<< "${THROUGHPUT_ARGS:---device cuda --quick --seconds 5 --repeats 2 \
--compile both --compiled tuner,bare --micro-batch auto --name throughput-cuda}"
else
  read -r -a T_ARGS <<< "${THROUGHPUT_ARGS:---device cpu --size nano --seq-len 32 --batch 4 \
--steps 6 --repeats 1 --eval-tokens 256 --compile off --micro-batch auto \
--name throughput-dry-run}"
fi
phase throughput "${THROUGHPUT_TIMEOUT:-$LIMIT_THROUGHPUT}" "$PY" bench/throughput.py "${T_ARGS[@]}"

# ---------------------------------------------------------------- 4. K trials per GPU
if [[ $MODE == gpu ]]; then
  read -r -a S_ARGS <<< "${STUDY_ARGS:---workers 1,4 --name gpu_study}"
else
  read -r -a S_ARGS <<< "${STUDY_ARGS:---tiny --sizes nano --tokens 4096 --workers 1,4 \
--name gpu_study-dry-run}"
fi
phase "lm_small K=1 vs K=4" "${STUDY_TIMEOUT:-$LIMIT_STUDY}" "$PY" bench/gpu_study.py "${S_ARGS[@]}"

# ---------------------------------------------------------------- 5. summary
TOTAL=$((SECONDS - START))
{
  echo "# gpu_check summary ($MODE)"
  echo
  [[ $MODE == dry ]] && echo "A dry run: nano sizes on a CPU, to check the plumbing; its figures and goal lines \
mean nothing for a GPU." && echo
  echo "machine: $("$PY" -c "import torch; print(torch.cuda.get_device_name() \
if torch.cuda.is_available() else 'cpu')"), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  GOALS=$(for f in "$OUT"/*.md; do [[ $f == */summary.md ]] || grep -h "^goal " "$f" || true; done)
  echo "${GOALS:-(no goal lines: a step failed, see gpu_check.log)}"
  echo
  printf -- "- %s\n" "${TIMES[@]}"
  VERDICT=$([[ $TOTAL -le 480 ]] && echo met || echo "NOT met")
  [[ $MODE == dry ]] && VERDICT="not judged: a dry run"
  echo
  echo "goal gpu_check within 8 minutes: $TOTAL s ($VERDICT)"
} > "$OUT/summary.md"
echo
cat "$OUT/summary.md"
