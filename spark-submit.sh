#!/usr/bin/env bash
# Run a varsky job with spark-submit, on any master.
#
#   ./spark-submit.sh [spark-submit options] JOB [job options]
#   ./spark-submit.sh classify --input data/sample --output out            # local[*]
#   ./spark-submit.sh --master spark://host:7077 --executor-memory 4g classify --input ... --output ...
#
# What it does: zips jobs/, udfs/, catalogs/ and reports/ into build/varsky-pyfiles.zip for
# --py-files, ships the model (model.keras and model_card.json of the job's --model, default the
# shipped model) with --files, defaults to --master local[*] (binding to 127.0.0.1), sets Arrow
# on, Python worker reuse and the Python of the driver and executors, and a quiet driver log
# (conf/log4j2.properties: WARN; the job's --verbose keeps Spark's INFO log). Every other option
# goes to spark-submit untouched; yours win over ours.
#
# Python on a cluster: executors need the same packages. Pack the environment once and ship it:
#   .venv/bin/pip install venv-pack && .venv/bin/venv-pack -p .venv -o build/varsky-env.tar.gz
#   ./spark-submit.sh --master yarn --archives build/varsky-env.tar.gz#env \
#       --conf spark.pyspark.python=./env/bin/python classify --input hdfs:///ztf/dr19 --output ...
# (conda-pack works the same way.) Where every node sees this checkout (a shared file system, or
# one machine, as in the tests), the default executor Python is this checkout's .venv.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jobs="classify train simulate ingest report"
python=${PYSPARK_PYTHON:-$here/.venv/bin/python}
if [ -n "${SPARK_HOME:-}" ]; then submit=$SPARK_HOME/bin/spark-submit; else submit=$here/.venv/bin/spark-submit; fi
[ -x "$submit" ] || { echo "spark-submit.sh: $submit not found: run 'make setup' or set SPARK_HOME" >&2; exit 2; }

# spark-submit options that take no value; every other --option takes one.
flags=" --verbose -v --supervise --help -h --version "
spark_args=()
job=""
user_master=""
user_files=""
while [ $# -gt 0 ]; do
  arg=$1
  if [[ " $jobs " == *" $arg "* ]]; then job=$arg; shift; break; fi
  if [[ "$arg" != -* ]]; then
    echo "spark-submit.sh: error: unknown job '$arg'; JOB is one of: $jobs" >&2
    exit 2
  fi
  case "$arg" in
    --master) user_master=$2 ;;
    --master=*) user_master=${arg#--master=} ;;
  esac
  if [ "$arg" = "--files" ]; then user_files=$2; shift 2; continue; fi
  spark_args+=("$arg"); shift
  if [[ "$arg" == -* && "$arg" != *=* && "$flags" != *" $arg "* && $# -gt 0 ]]; then
    spark_args+=("$1"); shift
  fi
done
if [ -z "$job" ]; then
  echo "usage: ./spark-submit.sh [spark-submit options] JOB [job options]; JOB is one of: $jobs" >&2
  exit 2
fi
job_args=("$@")

# The model the job will use: its --model, else the shipped one.
model_dir=$here/models/varsky_dmdt_cnn
for ((i = 0; i < ${#job_args[@]}; i++)); do
  case "${job_args[$i]}" in
    --model) model_dir=${job_args[$((i + 1))]} ;;
    --model=*) model_dir=${job_args[$i]#--model=} ;;
  esac
done
files=""
if [ "$job" = "classify" ]; then
  files="$model_dir/model.keras,$model_dir/model_card.json"
  [[ " ${job_args[*]} " == *" --model"* ]] || job_args+=(--model "$model_dir")
fi
[ -n "$user_files" ] && files=${files:+$files,}$user_files

mkdir -p "$here/build"
pyfiles=$here/build/varsky-pyfiles.zip
(cd "$here" && "$python" - "$pyfiles" <<'PY'
import sys, zipfile
from pathlib import Path
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for package in ("jobs", "udfs", "catalogs", "reports"):
        for path in sorted(Path(package).rglob("*.py")):
            z.write(path, path.as_posix())
PY
)

export PYSPARK_PYTHON=$python
export PYSPARK_DRIVER_PYTHON=${PYSPARK_DRIVER_PYTHON:-$python}
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$here/.numba_cache}
defaults=(
  --conf spark.sql.execution.arrow.pyspark.enabled=true
  --conf spark.python.worker.reuse=true
  --conf "spark.pyspark.python=$python"
  --conf "spark.pyspark.driver.python=$PYSPARK_DRIVER_PYTHON"
  --conf "spark.executorEnv.NUMBA_CACHE_DIR=$NUMBA_CACHE_DIR"
  --py-files "$pyfiles"
)
[ -n "$user_master" ] || defaults=(--master "local[*]" "${defaults[@]}")
# Local runs: bind to loopback (no "hostname resolves to a loopback address" warning).
if [ -z "$user_master" ] || [[ "$user_master" == local* ]]; then
  export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}
fi
# Quiet driver log (WARN) unless the job asks for --verbose or you set driver Java options.
if [[ " ${job_args[*]} " != *" --verbose "* && " ${spark_args[*]} " != *"driver-java-options"* \
      && " ${spark_args[*]} " != *"spark.driver.extraJavaOptions"* ]]; then
  defaults+=(--conf "spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=file://$here/conf/log4j2.properties")
fi
[ -n "$files" ] && defaults+=(--files "$files")

exec "$submit" "${defaults[@]}" "${spark_args[@]}" "$here/jobs/spark_entry.py" "$job" "${job_args[@]}"
