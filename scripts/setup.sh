#!/usr/bin/env bash
# Set up ghostnas on a fresh machine; safe to run again (it skips what is already done).
#   - Fashion-MNIST (the default dataset) from Debian's dataset-fashion-mnist package, unless
#     GHOSTNAS_DATA points elsewhere;
#   - PostgreSQL server binaries (Debian's postgresql), used by the multi-worker tests;
#   - a virtual environment in .venv with torch + torchvision and ghostnas (editable) + dev tools
#     (the dev tools include timm, whose GhostNet models the weight-mapping tests compare against;
#     timm needs torchvision, and torchvision needs the torch it was built for; Ultralytics for
#     `ghostnas.yolo` needs it too).
# Override the torch requirement with TORCH_SPEC (default 'torch==2.14.1 torchvision==0.29.1', a
# matching pair from the package cache; the CUDA build also runs on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get here: install $* by hand"; return 1
  fi
  $sudo apt-get install -y -qq "$@" >/dev/null 2>&1 || { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq "$@" >/dev/null; }
}

if [ -z "${GHOSTNAS_DATA:-}" ] && [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  say "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
  apt_install dataset-fashion-mnist || say "could not install dataset-fashion-mnist; set GHOSTNAS_DATA to a folder with the idx files"
fi

# PostgreSQL: the storage many search workers share; the tests start a throw-away server.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  say "installing PostgreSQL (Debian package postgresql)"
  apt_install postgresql || say "could not install PostgreSQL; the PostgreSQL tests will be skipped outside CI"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi

stamp=.venv/.ghostnas-setup
torch_spec=${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
read -ra torch_reqs <<<"$torch_spec"
want="$(sha256sum pyproject.toml | cut -c1-16) $torch_spec"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing $torch_spec and ghostnas[dev] into .venv (a few minutes the first time)"
  log=.venv/setup-pip.log
  { .venv/bin/python -m pip install -q "${torch_reqs[@]}" &&
    .venv/bin/python -m pip install -q -e '.[dev]' &&
    # A .venv made before ghostnas moved to ultralytics-thop may still hold the original `thop`
    # package, which writes the same `thop` module: remove it and restore the fork's files.
    { ! .venv/bin/python -m pip show -q thop >/dev/null 2>&1 ||
      { .venv/bin/python -m pip uninstall -y -q thop &&
        .venv/bin/python -m pip install -q --force-reinstall --no-deps ultralytics-thop; }; }; } >"$log" 2>&1 ||
    { cat "$log" >&2; say "pip install failed (log above)"; exit 1; }
  echo "$want" > "$stamp"
fi
say "ready: .venv/bin/ghostnas"
