# Sourced by tests/run and www/demo: installs what is missing on a fresh Debian/Ubuntu machine with Rust,
# Node and root. Every step is skipped when its tool is already there, so re-runs cost nothing.

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "$@"
}

# The toolchain pinned in rust-toolchain.toml, with the wasm32 target.
ensure_rust() {
  command -v rustup >/dev/null || { echo "rustup is required (https://rustup.rs)" >&2; return 1; }
  local target
  target=$(rustup target list --installed 2>/dev/null || true)
  case "$target" in
    *wasm32-unknown-unknown*) ;;
    *) say "adding the wasm32-unknown-unknown target"; rustup target add wasm32-unknown-unknown ;;
  esac
}

# clang compiles SQLite for wasm32 (sqlite-wasm-rs, under rusqlite on wasm32).
ensure_clang() {
  command -v clang >/dev/null && return 0
  say "installing clang (SQLite for wasm32)"
  apt_install clang llvm
}

# PostgreSQL server binaries (the tests and the demo start their own throwaway cluster from them).
ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then return 0; fi
  say "installing PostgreSQL"
  apt_install postgresql
}

# Node and npm (wrangler, and later the browser tests).
ensure_node() {
  command -v node >/dev/null && command -v npm >/dev/null && return 0
  say "installing Node.js"
  apt_install nodejs npm
}

# wrangler (with the workerd it ships), esbuild and binaryen for the Worker, from server-edge/package-lock.json.
ensure_edge_tooling() {
  if [ ! -x server-edge/node_modules/.bin/wrangler ] || [ server-edge/package-lock.json -nt server-edge/node_modules ]; then
    say "installing the edge tooling (npm ci in server-edge/)"
    (cd server-edge && npm ci --no-audit --no-fund --loglevel=error)
    touch server-edge/node_modules
  fi
}

# Debian's Chromium for the browser tests (driven by playwright-core; never a downloaded browser).
ensure_chromium() {
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] && return 0
  say "installing Chromium"
  apt_install chromium chromium-driver || { sleep 5; apt_install chromium chromium-driver; }
}

# Debian's Prometheus (and promtool) for the operations test: a real scrape of the native server's /metrics, the
# dashboard's queries run against it, and the alert rules checked. Its packaged service is not started.
ensure_prometheus() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  say "installing Prometheus"
  local policy=/usr/sbin/policy-rc.d made=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy" && made=1
  fi
  apt_install --no-install-recommends prometheus || { sleep 5; apt_install --no-install-recommends prometheus; }
  [ "$made" = 0 ] || as_root rm -f "$policy"
}

# Debian's Firefox ESR for the browser suite's second engine (driven by puppeteer-core over WebDriver BiDi).
ensure_firefox() {
  [ -x "${FIREFOX:-/usr/bin/firefox-esr}" ] && return 0
  say "installing Firefox ESR"
  apt_install firefox-esr || { sleep 5; apt_install firefox-esr; }
}

# Debian's WebKitGTK for the browser suite's third engine: WebKitWebDriver and MiniBrowser (webkit2gtk-driver),
# on an Xvfb display (tests/browser/webkit.mjs).
ensure_webkit() {
  command -v WebKitWebDriver >/dev/null && command -v Xvfb >/dev/null && return 0
  say "installing WebKitGTK's WebDriver and Xvfb"
  apt_install webkit2gtk-driver xvfb || { sleep 5; apt_install webkit2gtk-driver xvfb; }
}

# npm ci in $1 when its node_modules is missing or older than its lockfile.
ensure_npm() {
  if [ ! -d "$1/node_modules" ] || [ "$1/package-lock.json" -nt "$1/node_modules" ]; then
    say "installing npm packages in $1"
    # npm ci needs the lockfile to name every optional platform package (Vite's rollup lists ~25); a registry
    # mirror that lacks some makes npm ci refuse, so fall back to npm install, which still honours the lockfile.
    # npm install rewrites the lockfile for the mirror it saw; the checked-in one is put back, so running the
    # tests leaves the checkout clean.
    (cd "$1" && { npm ci --no-audit --no-fund --loglevel=silent 2>/dev/null || {
      cp -p package-lock.json .package-lock.json.orig
      if npm install --no-audit --no-fund --loglevel=error; then ok=0; else ok=$?; fi
      mv .package-lock.json.orig package-lock.json; exit "$ok"; }; })
    touch "$1/node_modules"
  fi
}

# The pinned wasm-bindgen CLI (same version as the crate) in the tools cache outside the checkout.
tools_bin="${OVERSYNC_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/oversync/tools}/bin"
ensure_wasm_bindgen() {
  local want=0.2.129
  if [ "$("$tools_bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $want" ]; then
    say "installing wasm-bindgen-cli $want into $tools_bin (several minutes, once)"
    cargo install --locked wasm-bindgen-cli --version "$want" --root "$(dirname "$tools_bin")"
  fi
}

# Keep wrangler local and quiet: no telemetry, no Cloudflare requests.
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_HIDE_BANNER=true
