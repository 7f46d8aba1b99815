#!/bin/sh
# Prometheus for the `observability` profile (docker-compose.yml). The gateway's /metrics needs a
# credential and Prometheus reads a bearer credential from a file only, so COUNTERSIGN_METRICS_TOKEN
# (passed on from .env) is written to the file deploy/prometheus.yml names, on a tmpfs, before Prometheus
# starts with the image's usual flags. Unset, the file is empty and the `countersign-api` target answers
# 401 (docs/observability.md).
set -eu
umask 077
printf '%s' "${COUNTERSIGN_METRICS_TOKEN:-}" > /run/countersign/metrics_token
unset COUNTERSIGN_METRICS_TOKEN
exec /bin/prometheus \
  --config.file=/etc/prometheus/prometheus.yml \
  --storage.tsdb.path=/prometheus \
  "$@"
