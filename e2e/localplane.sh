#!/usr/bin/env bash
# Local control plane (real etcd + kube-apiserver + kube-controller-manager on 127.0.0.1).
#   e2e/localplane.sh up|down|status|build [--state-dir DIR] ...
# `up` prints the admin kubeconfig path as its last stdout line:  export KUBECONFIG=$(e2e/localplane.sh up)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$repo/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
exec "$PYTHON" -m nlpmodel_harness.localplane "$@"
