#!/usr/bin/env bash
# Installs SecureNode on a Debian 12 host (as root): the release binary, the systemd unit, the
# `securenode` system user (in group tss, for /dev/tpmrm0), its directories, a config file with
# owner-only permissions (written only if absent), the firmware profile, and a signed model with its
# signature and publisher key. Idempotent: a second run changes nothing and says so.
#
#   deploy/install.sh [--binary PATH] [--model DIR --signature FILE
#                     (--public-key PEM | --certificate-chain PEM)] [--model-id ID]
#                     [--profile FILE] [--no-verify] [--enable] [--root DIR]
#   deploy/install.sh --uninstall [--purge] [--root DIR]
#
# --binary     the securenode executable to install (default: `swift build -c release` here)
# --model ...  default: the model scripts/setup.sh fetched, its committed signature and key
# --profile    default: firmware-profiles/generic-x86-uefi-secureboot.json
# --no-verify  do not check the model with `securenode model verify` before installing it
# --enable     also `systemctl enable --now securenode` (the node starts serving)
# --root DIR   install into a staging root (packaging, tests): files only. No user is created,
#              no systemctl runs and nothing is chowned: the sysusers.d and tmpfiles.d files
#              installed with the unit create the user and set ownership on the target's boot.
# --uninstall  removes the unit and the binary; keeps config, state and models (--purge removes
#              them too, and the user).
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
umask 022

root=""
binary=""
model="" signature="" public_key="" certificate_chain="" model_id=""
profile="$REPO/firmware-profiles/generic-x86-uefi-secureboot.json"
verify=1 enable=0 uninstall=0 purge=0
need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
while (($#)); do
  case "$1" in
    --binary) need_value "$@"; binary="$2"; shift ;;
    --model) need_value "$@"; model="$2"; shift ;;
    --signature) need_value "$@"; signature="$2"; shift ;;
    --public-key) need_value "$@"; public_key="$2"; shift ;;
    --certificate-chain) need_value "$@"; certificate_chain="$2"; shift ;;
    --model-id) need_value "$@"; model_id="$2"; shift ;;
    --profile) need_value "$@"; profile="$2"; shift ;;
    --root) need_value "$@"; root="$2"; shift ;;
    --no-verify) verify=0 ;;
    --enable) enable=1 ;;
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    -h|--help) sed -n '2,/^# shellcheck/{/^# shellcheck/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
((purge == 0 || uninstall == 1)) || die "--purge goes with --uninstall"
[[ -z "$public_key" || -z "$certificate_chain" ]] || die "give --public-key or --certificate-chain, not both"
if [[ -n "$root" ]]; then
  [[ -d "$root" ]] || die "--root $root is not a directory"
  root="$(cd "$root" && pwd)"
  [[ "$root" != / ]] || root=""
  host=0
else
  host=1
  [[ $(id -u) == 0 ]] || die "installing on this host needs root: sudo $0 (or --root DIR for a staging root)"
fi

# Where everything goes (inside $root).
BIN=/usr/local/bin/securenode
UNIT=/etc/systemd/system/securenode.service
SYSUSERS=/etc/sysusers.d/securenode.conf
TMPFILES=/etc/tmpfiles.d/securenode.conf
ETC=/etc/securenode
CONFIG=$ETC/securenode.yaml
PROFILES=$ETC/profiles
STATE=/var/lib/securenode
MODELS=$STATE/models
USER_NAME=securenode

changes=0
changed() { changes=$((changes + 1)); log "$*"; }
systemd_running() { ((host)) && [[ -d /run/systemd/system ]]; }

# Mode and owner of an installed path; owners are only managed on a host (see --root above).
fix_attrs() { # path mode owner group
  local path="$root$1"
  if [[ $(stat -c %a "$path") != "${2#0}" ]]; then chmod "$2" "$path"; changed "mode $2: $1"; fi
  if ((host)) && [[ $(stat -c %U:%G "$path") != "$3:$4" ]]; then
    chown "$3:$4" "$path"; changed "owner $3:$4: $1"
  fi
}
ensure_dir() { # path mode owner group
  if [[ ! -d "$root$1" ]]; then install -d -m "$2" "$root$1"; changed "created $1"; fi
  fix_attrs "$@"
}
# Installs a file atomically (temporary file and rename) unless an identical one is there.
install_file() { # source path mode owner group
  local src="$1" dst="$root$2"
  [[ -f "$src" ]] || die "$src is not a file"
  if [[ ! -f "$dst" ]] || ! cmp -s "$src" "$dst"; then
    mkdir -p "$(dirname "$dst")"
    install -m "$3" "$src" "$dst.new.$$"
    mv -f "$dst.new.$$" "$dst"
    changed "installed $2"
  fi
  fix_attrs "$2" "$3" "$4" "$5"
}
remove_path() { # absolute path
  [[ "$1" == /?* ]] || die "internal: remove_path $1"
  if [[ -e "$root$1" || -L "$root$1" ]]; then rm -rf -- "$root$1"; changed "removed $1"; fi
}

# --- uninstall -----------------------------------------------------------------------------------
if ((uninstall)); then
  if systemd_running && [[ -f "$UNIT" ]]; then
    if systemctl is-enabled --quiet securenode.service || systemctl is-active --quiet securenode.service; then
      systemctl disable --now securenode.service; changed "stopped and disabled securenode.service"
    fi
  fi
  remove_path "$UNIT"
  remove_path "$BIN"
  if ((purge)); then
    remove_path "$CONFIG"
    remove_path "$ETC"
    remove_path "$STATE"
    remove_path "$SYSUSERS"
    remove_path "$TMPFILES"
    if ((host)) && getent passwd "$USER_NAME" >/dev/null; then
      userdel "$USER_NAME"; changed "removed user $USER_NAME"
    fi
  else
    [[ ! -e "$root$ETC" && ! -e "$root$STATE" ]] || log "kept $ETC and $STATE (config, state, models): --purge removes them"
  fi
  if systemd_running && ((changes)); then systemctl daemon-reload; fi
  if ((changes)); then log "uninstalled: $changes change(s)"; else log "no changes: nothing (more) to remove"; fi
  exit 0
fi

# --- what to install -----------------------------------------------------------------------------
if [[ -z "$model" && -z "$signature" && -z "$public_key" && -z "$certificate_chain" && ! -f "$root$CONFIG" ]]; then
  # First install with no model given: the default model (scripts/setup.sh fetches it).
  model="$DEFAULT_MODEL_DIR" signature="$DEFAULT_MODEL_SIGNATURE" public_key="$DEFAULT_MODEL_PUBLISHER_KEY"
  model_id="${model_id:-smollm2-135m-instruct}"
  [[ -d "$model" ]] || die "no --model given and the default model is not in $model: run scripts/setup.sh --no-build, or give --model DIR --signature FILE --public-key PEM"
fi
if [[ -n "$model" ]]; then
  [[ -e "$model" ]] || die "--model $model does not exist"
  [[ -n "$signature" ]] || die "--model needs --signature"
  [[ -n "$public_key" || -n "$certificate_chain" ]] || die "--model needs --public-key or --certificate-chain"
  model="$(cd "$(dirname "$model")" && pwd)/$(basename "$model")"
  model_name="$(basename "$model")"
  [[ "$model_name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "model name $model_name: use letters, digits, . _ -"
  model_id="${model_id:-$model_name}"
elif [[ -n "$signature$public_key$certificate_chain" ]]; then
  die "--signature, --public-key and --certificate-chain go with --model"
fi
[[ -f "$profile" ]] || die "--profile $profile is not a file"

if [[ -z "$binary" ]]; then
  log "building securenode (release)"
  (cd "$REPO" && swift build -c release --product securenode)
  binary="$(cd "$REPO" && swift build -c release --show-bin-path)/securenode"
fi
[[ -f "$binary" && -x "$binary" ]] || die "--binary $binary is not an executable file"

# Refuse a model that does not verify before anything is changed (the node checks it again on
# every start, against the installed copies).
# An encrypted model (`securenode model encrypt`) verifies only with its data key, which this host
# must not hold in the clear: the node verifies it in memory at every start (README "Confidential models").
if [[ -n "$model" ]] && ((verify)) && [[ -f "$model/encrypted-model.json" ]]; then
  log "$model_name is an encrypted model: the node verifies it with its released data key at start, not here"
  verify=0
fi
if [[ -n "$model" ]] && ((verify)); then
  trust=(--public-key "$public_key")
  [[ -z "$certificate_chain" ]] || trust=(--certificate-chain "$certificate_chain")
  log "verifying $model_name with the binary being installed"
  "$binary" model verify "$model" --signature "$signature" "${trust[@]}" >&2 \
    || die "the model does not verify against its signature: not installing anything"
fi

# --- user -----------------------------------------------------------------------------------------
install_file "$REPO/deploy/systemd/securenode-sysusers.conf" "$SYSUSERS" 0644 root root
install_file "$REPO/deploy/systemd/securenode-tmpfiles.conf" "$TMPFILES" 0644 root root
if ((host)); then
  had_user=0 had_tss=0
  getent passwd "$USER_NAME" >/dev/null && had_user=1
  id -nG "$USER_NAME" 2>/dev/null | tr ' ' '\n' | grep -qx tss && had_tss=1
  systemd-sysusers "$SYSUSERS"
  ((had_user)) || changed "created system user $USER_NAME"
  ((had_tss)) || changed "added $USER_NAME to group tss"
fi

# --- files ----------------------------------------------------------------------------------------
install_file "$binary" "$BIN" 0755 root root
install_file "$REPO/deploy/systemd/securenode.service" "$UNIT" 0644 root root
ensure_dir "$ETC" 0750 root "$USER_NAME"
ensure_dir "$PROFILES" 0750 root "$USER_NAME"
profile_path="$PROFILES/$(basename "$profile")"
install_file "$profile" "$profile_path" 0640 root "$USER_NAME"
ensure_dir "$STATE" 0700 "$USER_NAME" "$USER_NAME"
ensure_dir "$MODELS" 0750 root "$USER_NAME"

if [[ -n "$model" ]]; then
  dst="$MODELS/$model_name"
  if [[ -f "$model" ]]; then
    install_file "$model" "$dst" 0640 root "$USER_NAME"
  else
    if [[ ! -d "$root$dst" ]] || ! diff -rq --no-dereference "$model" "$root$dst" >/dev/null 2>&1; then
      # Copy beside, then swap: the installed model is never half old, half new.
      rm -rf "$root$dst.new" "$root$dst.old"
      cp -R --no-preserve=mode,ownership,timestamps "$model" "$root$dst.new"
      find "$root$dst.new" -type d -exec chmod 0750 {} + ; find "$root$dst.new" -type f -exec chmod 0640 {} +
      ((host == 0)) || chown -R "root:$USER_NAME" "$root$dst.new"
      [[ ! -e "$root$dst" ]] || mv "$root$dst" "$root$dst.old"
      mv "$root$dst.new" "$root$dst"
      rm -rf "$root$dst.old"
      changed "installed model $dst"
    fi
    # Directories 0750, files 0640, root:securenode: the node reads them and cannot change them
    # (and the unit mounts them read-only). Repaired here if they drifted.
    if [[ -n $(find "$root$dst" \( -type d ! -perm 0750 \) -o \( -type f ! -perm 0640 \)) ]]; then
      find "$root$dst" -type d -exec chmod 0750 {} + ; find "$root$dst" -type f -exec chmod 0640 {} +
      changed "modes 0750/0640: $dst"
    fi
    if ((host)) && [[ -n $(find "$root$dst" ! \( -user root -group "$USER_NAME" \)) ]]; then
      chown -R "root:$USER_NAME" "$root$dst"; changed "owner root:$USER_NAME: $dst"
    fi
  fi
  install_file "$signature" "$MODELS/$model_name.sig" 0640 root "$USER_NAME"
  if [[ -n "$public_key" ]]; then
    trust_path="$ETC/publisher.pub.pem"; trust_line="public_key: $trust_path"
    install_file "$public_key" "$trust_path" 0640 root "$USER_NAME"
  else
    trust_path="$ETC/publisher-root.pem"; trust_line="certificate_chain: [$trust_path]"
    install_file "$certificate_chain" "$trust_path" 0640 root "$USER_NAME"
  fi
fi

# --- config: written only if absent; its mode and owner are always enforced ---------------------
if [[ ! -f "$root$CONFIG" ]]; then
  [[ -n "$model" ]] || die "no config yet and no model to write it for: give --model"
  tmp="$root$CONFIG.new.$$"
  (umask 077; cat > "$tmp" <<EOF
# SecureNode configuration, written by deploy/install.sh; it never overwrites this file.
# Every key is described in deploy/securenode.yaml.example.
profile: $profile_path
tcti: device:/dev/tpmrm0
state_dir: $STATE
model:
  id: $model_id
  path: $MODELS/$model_name
  signature: $MODELS/$model_name.sig
  $trust_line
  chat_template:                     # a Jinja chat template file used instead of the model's tokenizer.chat_template (as llama-server's --chat-template-file); empty: the model's own
  # An encrypted model ("securenode model encrypt"; README "Confidential models"): where serve gets its
  # data key, into memory only. For a plaintext model leave sealed empty and keylime false.
  key:
    sealed:                           # the data key sealed by "securenode seal --in KEY", e.g. /var/lib/securenode/model-key.sealed.json
    approvals: []                     # publisher approvals ("securenode approve-policy") for a key sealed to a policy key
    policy_key:                       # that policy key's public PEM (default: the profile's seal.policyAuthorizationKey)
    keylime: false                    # true: wait for Keylime's secure payload (keylime_tenant -c add ... -f KEY); needs keylime:
    wait_seconds: 300                 # how long serve waits for Keylime to release the key, then refuses to start
server:
  host: 127.0.0.1
  port: 8080
  max_connections: 512                # per listener; LimitNOFILE=8192 in the unit covers two of up to 3968
  header_timeout_seconds: 10          # a request head must be complete this long after its first byte (else 408)
  body_timeout_seconds: 60            # a request body must be complete this long after its head
  idle_timeout_seconds: 60            # a connection with no request in progress is closed after this long
  tls_handshake_timeout_seconds: 10   # the TLS handshake must be complete this long after connecting
  # tls: {}                          # optional: TLS with the node's TPM-sealed api-tls key (README "Node keys");
  #   certificate: $ETC/tls/server.crt   # or bring your own (weaker): both certificate and private_key
  #   private_key: $ETC/tls/server.key
  #   client_ca: $ETC/tls/clients-ca.pem # mutual TLS
keys:                                 # node keys: made by serve on first start (PCR policy), or securenode keys init
  approvals: []                       # securenode approve-policy --node-keys files
auth:
  api_key_sha256: []                  # hex SHA-256 of each bearer key; never the keys themselves
  open_health: true
  open_metrics: true
limits:
  max_body_bytes: 1048576
  max_prompt_tokens: 2048
  max_tokens: 1024
  context_length: 4096
  parallel: 4
  queue_depth: 64
  drain_seconds: 30
  prompt_cache: true                  # reuse a shared prompt prefix kept in an idle slot (same API key only)
  decoding: prompt-rows               # the default with parallel > 1; one-token: llama.cpp's kernels (README "Decoding")
  max_word_bytes: 8192
  max_n: 4
  exact: false                        # true: prompts bit-exact too, never OpenBLAS
  # per_key_concurrency: 2            # requests one API key may hold at once
EOF
  )
  mv -f "$tmp" "$root$CONFIG"
  changed "wrote $CONFIG"
elif [[ -n "$model" ]] && ! grep -qF "$MODELS/$model_name" "$root$CONFIG"; then
  log "warning: $CONFIG exists and does not name $MODELS/$model_name: edit its model section"
fi
fix_attrs "$CONFIG" 0600 "$USER_NAME" "$USER_NAME"

# --- systemd --------------------------------------------------------------------------------------
if systemd_running; then
  ((changes == 0)) || systemctl daemon-reload
  if ((enable)) && ! systemctl is-enabled --quiet securenode.service; then
    systemctl enable --now securenode.service; changed "enabled and started securenode.service"
  elif ((changes)) && systemctl is-active --quiet securenode.service; then
    log "securenode.service is running the previous files: systemctl restart securenode"
  fi
elif ((host)); then
  log "systemd is not running here: enable the unit on the target (systemctl enable --now securenode)"
fi
((host)) || log "staging root $root: ownership is set on the target by systemd-sysusers and systemd-tmpfiles"

if ((changes)); then log "installed: $changes change(s)"; else log "no changes: everything was already installed"; fi
