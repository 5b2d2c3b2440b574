#!/usr/bin/env bash
# threefold container entrypoint: one image, the role is the first argument.
#
#   qa-api | recs-api | dashboard   gunicorn serving that Flask app on $PORT (default 8000)
#   alerts-consumer [ARGS...]       `threefold alerts run ARGS...` (Kafka consumer group member)
#   init-models                     build every missing model into the models volume, then exit
#   check-models [ENV_NAME...]      exit 1 unless each named model directory exists (k8s initContainer;
#                                   THREEFOLD_MODELS_WAIT_S=N waits up to N seconds)
#   healthcheck [URL]               exit 0 when URL (default http://127.0.0.1:$PORT/healthz) answers 2xx
#   anything else                   run as a command, e.g. `threefold stream replay ...` or `bash`
#
# THREEFOLD_DRY_RUN=1 prints each command (shell-quoted, one per line) instead of running it;
# tests/deploy/test_deploy.py uses that to run the same commands outside the image.
set -euo pipefail

GUNICORN_CONF="${GUNICORN_CONF:-/etc/threefold/gunicorn.conf.py}"
DRY_RUN="${THREEFOLD_DRY_RUN:-0}"

log() { printf '{"level": "info", "logger": "threefold.entrypoint", "message": "%s"}\n' "$*" >&2; }
die() { printf '{"level": "error", "logger": "threefold.entrypoint", "message": "%s"}\n' "$*" >&2; exit 1; }

# Replace this shell with the command (signals then reach it directly), or print it.
launch() {
  if [[ "$DRY_RUN" == 1 ]]; then printf '%q ' "$@"; printf '\n'; exit 0; fi
  exec "$@"
}

# Run one step and carry on, or print it.
step() {
  if [[ "$DRY_RUN" == 1 ]]; then printf '%q ' "$@"; printf '\n'; return 0; fi
  "$@"
}

need_env() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "environment variable $name is not set; it names a model directory on the models volume (see deploy/compose.yaml)"
  done
}

serve() {  # serve MODULE:FACTORY
  launch gunicorn --config "$GUNICORN_CONF" "$1"
}

# Folder of an app's shipped sample data inside the installed package.
sample_dir() {
  python -c 'import importlib.resources as r, sys; print(r.files("threefold.apps." + sys.argv[1]) / "data")' "$1"
}

# build_if_absent NAME TARGET COMMAND... : run COMMAND with {out} replaced by a scratch folder,
# then rename it to TARGET, so readers never see a half-built model.
build_if_absent() {
  local name="$1" target="$2"
  shift 2
  if [[ "$DRY_RUN" != 1 && -e "$target" ]]; then
    log "$name: $target exists, keeping it (delete it or point the env var elsewhere to rebuild)"
    return 0
  fi
  local scratch="$target.partial"
  [[ "$DRY_RUN" == 1 ]] || { rm -rf "$scratch"; mkdir -p "$(dirname "$target")"; log "$name: building into $target"; }
  step "${@//\{out\}/$scratch}"
  [[ "$DRY_RUN" == 1 ]] || mv -T "$scratch" "$target"
}

init_models() {
  need_env THREEFOLD_QA_BOT_DIR THREEFOLD_RECS_MODEL_DIR THREEFOLD_ALERTS_TOPIC_MODEL_DIR THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR
  local alerts_dir
  alerts_dir="$(dirname "$THREEFOLD_ALERTS_TOPIC_MODEL_DIR")"
  [[ "$(dirname "$THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR")" == "$alerts_dir" ]] \
    || die "THREEFOLD_ALERTS_TOPIC_MODEL_DIR and THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR must share one parent folder (alerts train writes both there)"
  local qa_data alerts_data recs_data
  qa_data="${THREEFOLD_QA_KB_PATH:-$(sample_dir qa)/store_faq.csv}"
  alerts_data="${THREEFOLD_ALERTS_TRAIN_DATA:-$(sample_dir alerts)/headlines_sample.csv}"
  recs_data="$(sample_dir recs)"
  build_if_absent "qa bot" "$THREEFOLD_QA_BOT_DIR" \
    threefold qa build --kb "$qa_data" --out "{out}"
  build_if_absent "alerts classifiers" "$alerts_dir" \
    threefold alerts train --data "$alerts_data" --out "{out}" --no-progress
  build_if_absent "recs model" "$THREEFOLD_RECS_MODEL_DIR" \
    threefold recs build --items "${THREEFOLD_RECS_ITEMS_PATH:-$recs_data/catalog.csv}" \
    --events "${THREEFOLD_RECS_EVENTS_PATH:-$recs_data/events.csv}" --out "{out}"
  log "models ready"
}

# check_models [ENV_NAME...]: each named model directory (default: all four) must exist.
# THREEFOLD_MODELS_WAIT_S=N keeps checking every 5 s for up to N seconds first.
check_models() {
  local names=("$@") name missing deadline=$((SECONDS + ${THREEFOLD_MODELS_WAIT_S:-0}))
  ((${#names[@]})) || names=(THREEFOLD_QA_BOT_DIR THREEFOLD_RECS_MODEL_DIR THREEFOLD_ALERTS_TOPIC_MODEL_DIR THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR)
  need_env "${names[@]}"
  while true; do
    missing=()
    for name in "${names[@]}"; do
      [[ -d "${!name}" ]] || missing+=("$name=${!name}")
    done
    ((${#missing[@]})) || { log "models present: ${names[*]}"; exit 0; }
    ((SECONDS < deadline)) || break
    log "waiting for ${missing[*]} (built by the init-models job)"
    sleep 5
  done
  die "missing model directories: ${missing[*]}; run the init-models job (k8s) or service (compose)"
}

healthcheck() {
  local url="${1:-http://127.0.0.1:${PORT:-8000}/healthz}"
  launch python -c 'import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=4) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
except Exception as exc:
    print(f"healthcheck {sys.argv[1]}: {exc}", file=sys.stderr)
    sys.exit(1)' "$url"
}

role="${1:-}"
[[ -n "$role" ]] || die "no role given; expected one of: qa-api recs-api dashboard alerts-consumer init-models check-models healthcheck, or a command"
shift
case "$role" in
  qa-api) serve 'threefold.apps.qa.web:create_app()' ;;
  recs-api) serve 'threefold.apps.recs.web:create_app()' ;;
  dashboard) serve 'threefold.apps.alerts.web:create_app()' ;;
  alerts-consumer) launch threefold alerts run "$@" ;;
  init-models) init_models ;;
  check-models) check_models "$@" ;;
  healthcheck) healthcheck "$@" ;;
  *) launch "$role" "$@" ;;
esac
