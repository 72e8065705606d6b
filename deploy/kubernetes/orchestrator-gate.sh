#!/usr/bin/env bash
# Orchestrator side: lets the Service route to a SecureNode pod only while the pod's TPM evidence
# verifies. For every node pod it fetches evidence for a fresh nonce, checks it with
# `securenode verify` (AK enrolled by credential activation, quote signature, nonce, PCRs, event
# log, reference values, model), and sets the pod's readiness gate condition
# securenode.io/attested to True or False. The DaemonSet declares that gate, so a pod is Ready (and
# in the Service's endpoints) only when its /readyz probe passes AND its last appraisal passed.
#
#   orchestrator-gate.sh --profile P.json [--enrolled-dir DIR] [--namespace NS] [--port N]
#                        [--interval SECONDS | --once]
#
# The first time it sees a host (spec.nodeName) it enrolls that host's node (`securenode enroll`:
# the EK certificate must chain to the profile's ekCAs, and the node must activate a credential
# made for that EK) and keeps the record in DIR/<host>.json; later appraisals trust only that AK.
# Delete a host's record to enroll it again (e.g. after replacing its TPM).
#
# Needs: kubectl (RBAC in 70-gate-rbac.yaml), curl, openssl, securenode (on PATH or $SECURENODE).
# Runs from a namespace labelled securenode.io/access=orchestrator (60-networkpolicy.yaml lets it
# reach the pods' port). SECURENODE_API_KEY, if set, is sent as a bearer key to the node.
set -euo pipefail

log() { printf '%s gate: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

profile="" enrolled_dir="./enrolled" namespace="securenode" port=8080 interval=30 once=0
while (($#)); do
  case "$1" in
    --profile) profile="${2:?--profile needs a file}"; shift ;;
    --enrolled-dir) enrolled_dir="${2:?--enrolled-dir needs a directory}"; shift ;;
    --namespace) namespace="${2:?--namespace needs a name}"; shift ;;
    --port) port="${2:?--port needs a number}"; shift ;;
    --interval) interval="${2:?--interval needs seconds}"; shift ;;
    --once) once=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[[ -f "$profile" ]] || die "--profile: give the firmware profile the nodes run with"
securenode="${SECURENODE:-securenode}"
for tool in kubectl curl openssl "$securenode"; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH"
done
mkdir -p "$enrolled_dir"
CONDITION="securenode.io/attested"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Sets the pod's condition, only when its status changes (lastTransitionTime means a transition).
set_condition() { # pod current-status new-status reason message
  local pod="$1" current="$2" status="$3" reason="$4" message="$5" now patch
  [[ "$current" != "$status" ]] || return 0
  now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  message="${message//\"/\'}"
  patch="{\"status\":{\"conditions\":[{\"type\":\"$CONDITION\",\"status\":\"$status\",\"reason\":\"$reason\",\"message\":\"$message\",\"lastTransitionTime\":\"$now\"}]}}"
  if kubectl -n "$namespace" patch pod "$pod" --subresource=status --type=strategic -p "$patch" >/dev/null; then
    log "$pod: $CONDITION=$status ($reason: $message)"
  else
    log "$pod: could not set $CONDITION=$status"
  fi
}

appraise() { # pod ip host current-status
  local pod="$1" ip="$2" host="$3" current="$4" url record nonce auth=()
  url="http://$ip:$port"
  record="$enrolled_dir/$host.json"
  [[ -z "${SECURENODE_API_KEY:-}" ]] || auth=(-H "Authorization: Bearer $SECURENODE_API_KEY")
  if [[ ! -s "$record" ]]; then
    if "$securenode" enroll --node "$url" --profile "$profile" --out "$work/enrolled.json" 2> "$work/enroll.err"; then
      mv "$work/enrolled.json" "$record"
      log "$pod: enrolled host $host"
    else
      set_condition "$pod" "$current" False EnrollmentFailed "$(tail -n 1 "$work/enroll.err")"
      return
    fi
  fi
  nonce="$(openssl rand -hex 16)"
  if ! curl -fsS --max-time 10 "${auth[@]}" "$url/v1/attestation?nonce=$nonce" -o "$work/evidence.json" 2> "$work/curl.err"; then
    set_condition "$pod" "$current" False EvidenceUnavailable "$(tail -n 1 "$work/curl.err")"
    return
  fi
  if "$securenode" verify --evidence "$work/evidence.json" --nonce "$nonce" --profile "$profile" \
       --enrolled "$record" > "$work/appraisal.json" 2> "$work/verify.err"; then
    set_condition "$pod" "$current" True Verified "evidence for nonce $nonce verified"
  else
    set_condition "$pod" "$current" False VerificationFailed "$(failed_check)"
  fi
}

# The first failed check of the appraisal (pretty-printed, sorted keys: check, detail, result),
# or the error securenode printed when it could not appraise at all.
failed_check() {
  local first
  first="$(awk -F'" : "' '/"check" : "/ {c=$2} /"detail" : "/ {d=$2}
    /"result" : "fail"/ && c != "" {sub(/",?$/, "", c); sub(/",?$/, "", d); print c ": " d; exit}' \
    "$work/appraisal.json" 2>/dev/null)"
  if [[ -n "$first" ]]; then printf '%s' "$first"; else tail -n 1 "$work/verify.err"; fi
}

while true; do
  # name, pod IP, host, current condition status: one pod a line.
  jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.status.podIP}{"\t"}{.spec.nodeName}{"\t"}{.status.conditions[?(@.type=="'"$CONDITION"'")].status}{"\n"}{end}'
  if kubectl -n "$namespace" get pods -l app.kubernetes.io/name=securenode -o "jsonpath=$jsonpath" > "$work/pods.tsv"; then
    while IFS=$'\t' read -r pod ip host current; do
      [[ -n "$pod" ]] || continue
      if [[ -z "$ip" || -z "$host" ]]; then continue; fi   # not scheduled or no IP yet
      appraise "$pod" "$ip" "$host" "${current:-Unknown}" < /dev/null
    done < "$work/pods.tsv"
  else
    log "could not list pods in $namespace"
  fi
  ((once == 0)) || break
  sleep "$interval"
done
