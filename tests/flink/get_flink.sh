#!/usr/bin/env bash
# Fetches Apache Flink 2.3 from PyPI (the apache-flink and apache-flink-libraries wheels,
# unzipped into one folder: a full distribution) into a cache folder, once, and prints its
# FLINK_HOME. Usage: get_flink.sh [CACHE_DIR] (default: $FLINK_CACHE or /var/cache/zabd-flink).
set -euo pipefail
cache=${1:-${FLINK_CACHE:-/var/cache/zabd-flink}}
home=$cache/dist/pyflink
if [ ! -x "$home/bin/jobmanager.sh" ] || [ ! -f "$home/lib/flink-dist-2.3.0.jar" ]; then
  mkdir -p "$cache/wheels"
  python3 -m pip download -q --no-deps -d "$cache/wheels" \
    'apache-flink==2.3.0' 'apache-flink-libraries==2.3.0' >&2
  rm -rf "$cache/dist"
  mkdir -p "$cache/dist"
  for w in "$cache"/wheels/apache_flink*2.3.0*.whl; do
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$w" "$cache/dist"
  done
  chmod +x "$home"/bin/*
fi
echo "$home"
