#!/bin/sh
# Installs this example's Python dependencies into .venv beside it, from the Python package
# registry. Run from anywhere: sh examples/python-flask-gunicorn/setup.sh
set -eu
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/gunicorn --version
