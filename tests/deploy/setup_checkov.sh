#!/usr/bin/env bash
# Create checkov's own virtual environment for the deployment policy scan.
#
#   bash tests/deploy/setup_checkov.sh VENV      (the Makefile uses VENV=.tools/checkov-venv)
#
# checkov pins packages (an old `packaging`, among others) that clash with the
# project's requirements, so it never goes into .venv. The tests call it with
# --skip-download so that it never reaches Prisma Cloud. Idempotent.
set -euo pipefail

CHECKOV_VERSION="${CAREVAULT_CHECKOV_VERSION:-3.3.30}"
venv="${1:?usage: setup_checkov.sh VENV}"
python="${PYTHON:-python3}"

if [[ -x "$venv/bin/checkov" ]] && "$venv/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
    echo "setup_checkov: checkov $CHECKOV_VERSION already in $venv, nothing to do"
    exit 0
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==${CHECKOV_VERSION}"
echo "setup_checkov: checkov $("$venv/bin/checkov" --version) in $venv"
