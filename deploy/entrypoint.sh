#!/usr/bin/env bash
# threefold container entrypoint: one image, the role is the first argument.
#
#   qa-api | recs-api | dashboard   gunicorn serving that Flask app on $PORT (default 8000)
#   alerts-consumer [ARGS...]       `threefold alerts run ARGS...` (Kafka consumer group member)
#   init-models                     publish v1 of every missing model into the registry, then exit
#   check-models [ENV_NAME...]      exit 1 unless each named model is present (k8s initContainer;
#                                   THREEFOLD_MODELS_WAIT_S=N waits up to N seconds)
#   retrain [APP...]                `threefold retrain APP` for each of qa, alerts, recs (default: all);
#                                   runs every one, exits 1 naming those that failed
#   healthcheck [URL]               exit 0 when URL (default http://127.0.0.1:$PORT/healthz) answers 2xx
#   anything else                   run as a command, e.g. `threefold stream replay ...` or `bash`
#
# THREEFOLD_DRY_RUN=1 prints each command (shell-quoted, one per line) instead of running it;
# tests/deploy/test_deploy.py uses that to run the same commands outside the image.
set -euo pipefail

GUNICORN_CONF="${GUNICORN_CONF:-/etc/threefold/gunicorn.conf.py}"
DRY_RUN="${THREEFOLD_DRY_RUN:-0}"

log() { printf '{"level": "info", "logger": "threefold.entrypoint", "message": "%s"}\n' "$*" >&2; }
error() { printf '{"level": "error", "logger": "threefold.entrypoint", "message": "%s"}\n' "$*" >&2; }
die() { error "$@"; exit 1; }

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

# model_present DIR: a registry entry with a current version (state.json), or a plain model
# folder a user pointed at (not empty, no versions/ subfolder). An entry folder without
# state.json is an interrupted first build: not present.
model_present() {
  [[ -f "$1/state.json" ]] || [[ -d "$1" && ! -d "$1/versions" && -n "$(ls -A "$1")" ]]
}

# alerts_joint_served: the alerts model variables name the registry's alerts-topic and
# alerts-sentiment entries, and the alerts-multitask entry beside them has a current version: the
# consumer then serves that one model in their place (apps/alerts/model_source.py served_dirs).
alerts_joint_served() {
  local topic="${THREEFOLD_ALERTS_TOPIC_MODEL_DIR%/}" sentiment="${THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR%/}"
  [[ "$(basename "$topic")" == alerts-topic && "$sentiment" == "$(dirname "$topic")/alerts-sentiment" \
    && -f "$(dirname "$topic")/alerts-multitask/state.json" ]]
}

# model_ready ENV_NAME: the model it names is present, or (an alerts model) alerts_joint_served.
model_ready() {
  model_present "${!1}" && return 0
  [[ "$1" == THREEFOLD_ALERTS_TOPIC_MODEL_DIR || "$1" == THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR ]] && alerts_joint_served
}

# registry_entry ENV_NAME NAME: die unless the env var names the entry NAME in $THREEFOLD_MODELS_DIR
# (where `--registry` publishes it).
registry_entry() {
  local expected="${THREEFOLD_MODELS_DIR%/}/$2"
  [[ "${!1%/}" == "$expected" ]] \
    || die "$1=${!1} but the build publishes into the registry entry $expected (THREEFOLD_MODELS_DIR=$THREEFOLD_MODELS_DIR). Fix: set $1=$expected, or put your own model folder at ${!1}"
}

# needs_build NAME DIR...: true unless every DIR is present (a dry run always builds).
needs_build() {
  local name="$1" dir absent=()
  shift
  [[ "$DRY_RUN" != 1 ]] || return 0
  for dir in "$@"; do model_present "$dir" || absent+=("$dir"); done
  if ((${#absent[@]} == 0)); then
    log "$name: $* present, keeping it (threefold retrain publishes new versions)"
    return 1
  fi
  log "$name: publishing into $* (no current version in ${absent[*]})"
}

# Each build publishes a new current version into its registry entry; a publish is atomic (a
# version appears only when complete, state.json only once it is activated), so readers never
# see a half-built model and an interrupted first build is simply run again.
init_models() {
  need_env THREEFOLD_MODELS_DIR THREEFOLD_QA_BOT_DIR THREEFOLD_RECS_MODEL_DIR THREEFOLD_ALERTS_TOPIC_MODEL_DIR THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR
  local qa_data alerts_data recs_data
  qa_data="${THREEFOLD_QA_KB_PATH:-$(sample_dir qa)/store_faq.csv}"
  alerts_data="${THREEFOLD_ALERTS_TRAIN_DATA:-$(sample_dir alerts)/headlines_sample.csv}"
  recs_data="$(sample_dir recs)"
  if needs_build "qa bot" "$THREEFOLD_QA_BOT_DIR"; then
    step threefold qa build --kb "$qa_data" --out "$THREEFOLD_QA_BOT_DIR"
  fi
  if [[ "$DRY_RUN" != 1 ]] && alerts_joint_served; then
    log "alerts classifiers: $(dirname "${THREEFOLD_ALERTS_TOPIC_MODEL_DIR%/}")/alerts-multitask present, keeping it (served in place of alerts-topic and alerts-sentiment)"
  elif needs_build "alerts classifiers" "$THREEFOLD_ALERTS_TOPIC_MODEL_DIR" "$THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR"; then
    registry_entry THREEFOLD_ALERTS_TOPIC_MODEL_DIR alerts-topic
    registry_entry THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR alerts-sentiment
    step threefold alerts train --data "$alerts_data" --registry "$THREEFOLD_MODELS_DIR" --no-progress
  fi
  if needs_build "recs ranker" "$THREEFOLD_RECS_MODEL_DIR"; then
    registry_entry THREEFOLD_RECS_MODEL_DIR recs-ranker
    step threefold recs build --items "${THREEFOLD_RECS_ITEMS_PATH:-$recs_data/catalog.csv}" \
      --events "${THREEFOLD_RECS_EVENTS_PATH:-$recs_data/events.csv}" --registry "$THREEFOLD_MODELS_DIR"
  fi
  log "models ready"
}

# check_models [ENV_NAME...]: each named model (default: all four) must be present.
# THREEFOLD_MODELS_WAIT_S=N keeps checking every 5 s for up to N seconds first.
check_models() {
  local names=("$@") name missing deadline=$((SECONDS + ${THREEFOLD_MODELS_WAIT_S:-0}))
  ((${#names[@]})) || names=(THREEFOLD_QA_BOT_DIR THREEFOLD_RECS_MODEL_DIR THREEFOLD_ALERTS_TOPIC_MODEL_DIR THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR)
  need_env "${names[@]}"
  while true; do
    missing=()
    for name in "${names[@]}"; do
      model_ready "$name" || missing+=("$name=${!name}")
    done
    ((${#missing[@]})) || { log "models present: ${names[*]}"; exit 0; }
    ((SECONDS < deadline)) || break
    log "waiting for ${missing[*]} (built by the init-models job)"
    sleep 5
  done
  die "missing models (no registry entry with a current version, no model folder): ${missing[*]}; run the init-models job (k8s) or service (compose)"
}

# The gate set `retrain qa` is judged on: THREEFOLD_QA_GATE_SET, or the shipped one for the
# shipped sample KB. Your own KB needs your own gate set (questions about it no build has seen).
qa_gate_set() {
  if [[ -n "${THREEFOLD_QA_GATE_SET:-}" ]]; then
    printf '%s\n' "$THREEFOLD_QA_GATE_SET"
  elif [[ -z "${THREEFOLD_QA_KB_PATH:-}" ]]; then
    printf '%s\n' "$(sample_dir qa)/store_gate.csv"
  else
    error "retrain qa: THREEFOLD_QA_GATE_SET is not set; the bot is built from your KB (THREEFOLD_QA_KB_PATH=$THREEFOLD_QA_KB_PATH), so the shipped gate set does not fit. Fix: mount a CSV question,faq_id of questions about your FAQs that no build has seen and set THREEFOLD_QA_GATE_SET to it"
    return 1
  fi
}

# retrain_app APP: the retrain command(s) of one app; alerts retrains both classifiers, or once
# the multi-task model when it is the one served (its retrain covers both tasks).
retrain_app() {
  local registry="$THREEFOLD_MODELS_DIR" by="threefold-entrypoint retrain"
  case "$1" in
    qa)
      local gate_set
      gate_set="$(qa_gate_set)" || return 1
      step threefold retrain qa --bot-dir "$THREEFOLD_QA_BOT_DIR" --gate-set "$gate_set"  # as built
      ;;
    alerts)
      local task tasks=(sentiment topic) data=() status=0
      [[ -z "${THREEFOLD_ALERTS_TRAIN_DATA:-}" ]] || data=(--training-data "$THREEFOLD_ALERTS_TRAIN_DATA")
      ! alerts_joint_served || tasks=(sentiment)
      for task in "${tasks[@]}"; do
        step threefold retrain alerts --task "$task" --registry "$registry" "${data[@]}" \
          --created-by "$by" --no-progress || status=1
      done
      return "$status"
      ;;
    recs)
      local recs_data
      recs_data="$(sample_dir recs)"
      step threefold retrain recs --items "${THREEFOLD_RECS_ITEMS_PATH:-$recs_data/catalog.csv}" \
        --events "${THREEFOLD_RECS_EVENTS_PATH:-$recs_data/events.csv}" --registry "$registry" \
        --created-by "$by"
      ;;
  esac
}

# retrain [APP...]: every app's retrain runs (each prints its JSON line on stdout), even after
# one fails; exit 1 at the end naming the failed ones.
retrain() {
  local apps=("$@") app failed=()
  ((${#apps[@]})) || apps=(qa alerts recs)
  need_env THREEFOLD_MODELS_DIR THREEFOLD_QA_BOT_DIR
  for app in "${apps[@]}"; do
    [[ "$app" =~ ^(qa|alerts|recs)$ ]] || die "retrain: unknown app '$app'; expected some of: alerts qa recs"
  done
  for app in "${apps[@]}"; do
    [[ "$DRY_RUN" == 1 ]] || log "retrain $app: starting"
    if retrain_app "$app"; then
      [[ "$DRY_RUN" == 1 ]] || log "retrain $app: finished"
    else
      failed+=("$app")
      error "retrain $app failed; carrying on with the others"
    fi
  done
  ((${#failed[@]} == 0)) || die "retrain failed for: ${failed[*]} (the others ran: see their JSON lines); fix the cause in the messages above and rerun: retrain ${failed[*]}"
  [[ "$DRY_RUN" == 1 ]] || log "retrain: ${apps[*]} finished"
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
[[ -n "$role" ]] || die "no role given; expected one of: qa-api recs-api dashboard alerts-consumer init-models check-models retrain healthcheck, or a command"
shift
case "$role" in
  qa-api) serve 'threefold.apps.qa.web:create_app()' ;;
  recs-api) serve 'threefold.apps.recs.web:create_app()' ;;
  dashboard) serve 'threefold.apps.alerts.web:create_app()' ;;
  alerts-consumer) launch threefold alerts run "$@" ;;
  init-models) init_models ;;
  retrain) retrain "$@" ;;
  check-models) check_models "$@" ;;
  healthcheck) healthcheck "$@" ;;
  *) launch "$role" "$@" ;;
esac
