#!/usr/bin/env bash
# Builds the npm package into npm/dist: the client crate for wasm32 (release profile: size-optimised), its
# wasm-bindgen glue (--target web, the pinned CLI), wasm-opt, then the TypeScript.
# Needs: the wasm32 target, clang, wasm-bindgen-cli (pinned; tests/setup.sh installs it), node_modules (npm ci).
set -euo pipefail
cd "$(dirname "$0")"
root=..
tools="${OVERSYNC_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/oversync/tools}/bin"
export PATH="$tools:$PATH"

cargo build --quiet --manifest-path "$root/Cargo.toml" -p oversync-client --lib \
  --target wasm32-unknown-unknown --release
rm -rf src/wasm dist
wasm-bindgen --target web --out-dir src/wasm --out-name oversync_client \
  "$root/target/wasm32-unknown-unknown/release/oversync_client.wasm"
node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-exception-handling \
  src/wasm/oversync_client_bg.wasm -o src/wasm/oversync_client_bg.wasm
node_modules/.bin/tsc -p tsconfig.json
mkdir -p dist/wasm
cp src/wasm/oversync_client.js src/wasm/oversync_client.d.ts src/wasm/oversync_client_bg.wasm dist/wasm/
echo "built npm/dist: $(du -sh dist | cut -f1)" >&2
