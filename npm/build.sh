#!/usr/bin/env bash
# Builds the npm package into npm/dist: the client crate for wasm32 (release profile: size-optimised), its
# wasm-bindgen glue (--target web, the pinned CLI), wasm-opt, then the TypeScript.
# WASM_OPT_EXTRA adds wasm-opt flags (-g keeps function names, for a CPU profile: bench/browser/profile.mjs).
# Installs the pinned wasm-bindgen-cli (tools cache) and the package's dev dependencies when missing.
set -euo pipefail
cd "$(dirname "$0")"
root=..
source "$root/tests/setup.sh"
ensure_wasm_bindgen
ensure_npm .

cargo build --quiet --manifest-path "$root/Cargo.toml" -p oversync-client --lib \
  --target wasm32-unknown-unknown --release
rm -rf src/wasm dist
"$tools_bin/wasm-bindgen" --target web --out-dir src/wasm --out-name oversync_client \
  "$root/target/wasm32-unknown-unknown/release/oversync_client.wasm"
node_modules/.bin/wasm-opt -O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-exception-handling \
  ${WASM_OPT_EXTRA:-} src/wasm/oversync_client_bg.wasm -o src/wasm/oversync_client_bg.wasm
node_modules/.bin/tsc -p tsconfig.json
mkdir -p dist/wasm
cp src/wasm/oversync_client.js src/wasm/oversync_client.d.ts src/wasm/oversync_client_bg.wasm dist/wasm/
echo "built npm/dist: $(du -sh dist | cut -f1)" >&2
