#!/usr/bin/env bash
# Builds the Worker front door: crate oversync-server → wasm32 → server-edge/build/worker/ (shim.mjs + wasm) with
# the pinned worker-build and wasm-bindgen, installed on first use into a cache outside the checkout
# (${XDG_CACHE_HOME:-~/.cache}/oversync/tools) so a fresh clone on the same machine does not rebuild them.
# Nothing is downloaded at build time: esbuild and wasm-opt (binaryen) come from this folder's npm install.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tools="${OVERSYNC_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/oversync/tools}"
WASM_BINDGEN_VERSION=0.2.129   # must equal the `wasm-bindgen = "=…"` pin in server-edge/Cargo.toml
WORKER_BUILD_VERSION=0.8.7     # must equal the `worker = "=…"` pin

ensure_tool() { # binary crate version
  local have
  have=$("$tools/bin/$1" --version 2>/dev/null | awk '{print $NF}' || true)
  if [ "$have" != "$3" ]; then
    echo "installing $2 $3 into $tools (one-time, several minutes)…" >&2
    cargo install --locked --quiet "$2" --version "$3" --root "$tools"
  fi
}
ensure_tool wasm-bindgen wasm-bindgen-cli "$WASM_BINDGEN_VERSION"
ensure_tool worker-build worker-build "$WORKER_BUILD_VERSION"
if [ ! -x "$here/node_modules/@esbuild/linux-x64/bin/esbuild" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

export WASM_BINDGEN_BIN="$tools/bin/wasm-bindgen"
export ESBUILD_BIN="$here/node_modules/@esbuild/linux-x64/bin/esbuild"
cd "$here"
# worker-build's own wasm-opt step passes flags binaryen rejects for this module; run it ourselves instead, with
# the features current rustc and wasm-bindgen emit (exception handling for the catch wrappers included).
"$tools/bin/worker-build" --release --no-opt "$@"
node_modules/.bin/wasm-opt -Oz --strip-debug --strip-producers \
  --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  --enable-reference-types --enable-multivalue --enable-exception-handling \
  build/index_bg.wasm -o build/index_bg.wasm
printf 'worker wasm: %s bytes, %s bytes gzip\n' "$(wc -c < build/index_bg.wasm)" "$(gzip -9 < build/index_bg.wasm | wc -c)" >&2
