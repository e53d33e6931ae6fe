#!/usr/bin/env bash
# Smoke test of cluster/serve_config.yaml on a throwaway local Ray head: `serve deploy` it, wait for
# the app to run, call /mlops/health and /docs, then stop that head (and only it).
#
#   cluster/smoke-serve-deploy.sh            # from the repository root, with .venv installed
#
# Ports are moved off the embedded stack's (8000, 8265, 6379, ...) so both can run at once; override
# with BASE_PORT=<n> (uses n..n+450). Exits non-zero unless the app is RUNNING and health is 200.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
base="${BASE_PORT:-28000}"
work="$(mktemp -d /tmp/asgard-smoke.XXXXXX)"
sed "s/^  port: 8000$/  port: ${base}/" cluster/serve_config.yaml > "$work/serve_config.yaml"
grep -q "port: ${base}" "$work/serve_config.yaml"

ray start --head --block --port=$((base + 100)) --dashboard-host=127.0.0.1 --dashboard-port=$((base + 265)) \
  --dashboard-agent-listen-port=$((base + 266)) --dashboard-agent-grpc-port=$((base + 267)) \
  --metrics-export-port=$((base + 268)) --runtime-env-agent-port=$((base + 269)) \
  --ray-client-server-port=$((base + 270)) --node-manager-port=$((base + 271)) \
  --object-manager-port=$((base + 272)) --min-worker-port=$((base + 300)) --max-worker-port=$((base + 450)) \
  --num-cpus=1 --temp-dir="$work/ray" --disable-usage-stats > "$work/ray.log" 2>&1 &
head_pid=$!
stop_head() { kill -TERM "$head_pid" 2>/dev/null; wait "$head_pid" 2>/dev/null || true; }
trap 'stop_head; echo "FAILED; logs in $work" >&2' EXIT
dashboard="http://127.0.0.1:$((base + 265))"

for _ in $(seq 60); do curl -s -o /dev/null "$dashboard" && break; sleep 2; done
serve deploy "$work/serve_config.yaml" --address "$dashboard"
status=""
for _ in $(seq 60); do
  status="$(serve status --address "$dashboard" 2>/dev/null || true)"
  grep -q "DEPLOY_FAILED" <<<"$status" && break
  grep -q "AsgardAPI" <<<"$status" && grep -q "status: RUNNING" <<<"$status" && break
  sleep 3
done
echo "$status"
grep -q "status: RUNNING" <<<"$status"
code="$(curl -s -m 20 -o "$work/health.json" -w '%{http_code}' "http://127.0.0.1:${base}/mlops/health")"
echo "GET /mlops/health -> $code $(cat "$work/health.json")"
[ "$code" = 200 ]
echo "GET /docs -> $(curl -s -m 20 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${base}/docs")"
trap - EXIT
stop_head
rm -rf "$work"
echo "serve_config.yaml deploys and serves"
