#!/usr/bin/env bash
# Run tox over the supported matrix with pyenv's interpreters: scripts/tox.sh [-e ENVS]
# PYENV_VERSION exposes them through pyenv's shims; tox's interpreter discovery does not pass
# it on to the shims, so each version's bin directory also goes on PATH.
set -eu
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
export PYENV_VERSION=3.11.7:3.12.1:3.13.0
for version in 3.13.0 3.12.1 3.11.7; do
  if [ -d "$root/versions/$version/bin" ]; then
    PATH="$root/versions/$version/bin:$PATH"
  fi
done
export PATH
exec "${TOX:-.venv/bin/tox}" "$@"
