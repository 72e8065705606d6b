# shellcheck shell=bash
# The llama.cpp peer that the benchmarks compare against, installed into bench/.venv-peer (gitignored)
# on first use. Sourced after scripts/common.sh, not run.
#
#   peer_llama_cpp_python   sets peer_python: a Python with llama-cpp-python $PEER_VERSION, compiled
#                           here from source (5-10 min on 2 cores); PEER_PYTHON=path uses that one
#   peer_llama_server       sets peer_server: llama.cpp's own `llama-server`, built from the llama.cpp
#                           sources vendored in the same llama-cpp-python $PEER_VERSION sdist (so both
#                           peers are the same llama.cpp commit; 5-10 min on 2 cores);
#                           LLAMA_SERVER=path uses that binary
#
# Both compile for this CPU (GGML_NATIVE=ON), never from a cached wheel built with other flags.
PEER_VERSION="0.3.36"   # the version the reference outputs and the fixtures were made with
# sha256 of llama_cpp_python-0.3.36.tar.gz on PyPI (the sdist; it vendors llama.cpp with tools/server)
PEER_SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
PEER_VENV="$REPO/bench/.venv-peer"

# g++, make, cmake and python3-venv, from Debian, if missing.
peer_build_deps() {
  local missing=() p
  for p in g++ make cmake python3-venv; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages to build llama.cpp: ${missing[*]}"
    [[ $(id -u) == 0 ]] || die "installing packages needs root: sudo $0"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

peer_has() { "$1" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$PEER_VERSION')" 2>/dev/null; }

peer_llama_cpp_python() {
  if [[ -n "${PEER_PYTHON:-}" ]]; then
    peer_python="$PEER_PYTHON"
    "$peer_python" -c "import llama_cpp" 2>/dev/null || die "PEER_PYTHON=$peer_python cannot import llama_cpp"
    peer_has "$peer_python" || log "warning: PEER_PYTHON has llama-cpp-python $("$peer_python" -c \
      'import llama_cpp; print(llama_cpp.__version__)'), not $PEER_VERSION"
    return 0
  fi
  peer_python="$PEER_VENV/bin/python"
  peer_has "$peer_python" && return 0
  peer_build_deps
  [[ -x "$peer_python" ]] || python3 -m venv "$PEER_VENV"
  log "building llama-cpp-python $PEER_VERSION into $PEER_VENV (compiles llama.cpp for this CPU: 5-10 min on 2 cores)"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$PEER_VENV/bin/pip" install -q --disable-pip-version-check \
    --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python==$PEER_VERSION"
  peer_has "$peer_python" || die "llama-cpp-python $PEER_VERSION did not install into $PEER_VENV"
}

peer_llama_server() {
  if [[ -n "${LLAMA_SERVER:-}" ]]; then
    peer_server="$LLAMA_SERVER"
    [[ -x "$peer_server" ]] || die "LLAMA_SERVER=$peer_server is not an executable"
    return 0
  fi
  local dir="$PEER_VENV/llama-server-$PEER_VERSION"
  peer_server="$dir/bin/llama-server"
  [[ -x "$peer_server" ]] && return 0
  peer_build_deps
  [[ -x "$PEER_VENV/bin/pip" ]] || python3 -m venv "$PEER_VENV"
  local sdist="$dir/llama_cpp_python-$PEER_VERSION.tar.gz" src="$dir/src" build="$dir/build"
  mkdir -p "$dir"
  if ! echo "$PEER_SDIST_SHA256  $sdist" | sha256sum -c --status 2>/dev/null; then
    log "fetching the llama-cpp-python $PEER_VERSION sdist (llama.cpp sources) from PyPI"
    "$PEER_VENV/bin/pip" download -q --disable-pip-version-check --no-cache-dir --no-deps \
      --no-binary llama-cpp-python -d "$dir" "llama-cpp-python==$PEER_VERSION" >&2
    echo "$PEER_SDIST_SHA256  $sdist" | sha256sum -c --status || die "$sdist: sha256 is not $PEER_SDIST_SHA256"
  fi
  rm -rf "$src" "$build"
  mkdir -p "$src"
  tar -xzf "$sdist" -C "$src" --strip-components=1
  log "building llama-server (llama.cpp vendored in llama-cpp-python $PEER_VERSION) for this CPU: 5-10 min on 2 cores"
  # No web UI (its assets would be downloaded), no HTTPS, no downloads: a plain local server.
  cmake -S "$src/vendor/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_CURL=OFF >"$dir/cmake.log" 2>&1 || { tail -20 "$dir/cmake.log" >&2; die "configuring llama-server failed ($dir/cmake.log)"; }
  cmake --build "$build" --target llama-server -j "$(nproc)" >"$dir/build.log" 2>&1 \
    || { tail -20 "$dir/build.log" >&2; die "building llama-server failed ($dir/build.log)"; }
  mkdir -p "$dir/bin"
  install -m 755 "$build/bin/llama-server" "$peer_server"
  rm -rf "$src" "$build"
  "$peer_server" --version >/dev/null 2>&1 || die "$peer_server does not run"
}
