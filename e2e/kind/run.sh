#!/usr/bin/env bash
# End-to-end tests on a kind cluster with real pods (needs Docker and kind; see e2e/kind/README.md).
#
#   e2e/kind/run.sh            # up + test + down (KEEP=1 keeps the cluster)
#   e2e/kind/run.sh up         # kind cluster, cert-manager, Gateway API + Envoy Gateway, KServe (Standard),
#                              # kube-prometheus-stack, our images, our chart, the Gateway and the load
#   e2e/kind/run.sh test       # the canary scenarios against the running cluster
#   e2e/kind/run.sh down       # delete the kind cluster
#
# The scenarios are `nlpctl demo --cluster` with e2e/kind/scenario/: a CPU model served by our
# transformers runtime becomes Ready; a 2.7x larger model (really slower) is rolled back on its
# metrics; a healthy update is promoted through the Gateway's weights. Then the chart's
# NLPModelRolledBack alert must have fired in Prometheus.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

CLUSTER="${CLUSTER:-nlpmodel-e2e}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.31.4}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.16.2}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.2.1}"
ENVOY_GATEWAY_VERSION="${ENVOY_GATEWAY_VERSION:-v1.2.4}"
KSERVE_VERSION="${KSERVE_VERSION:-v0.15.2}"
KUBE_PROMETHEUS_STACK_VERSION="${KUBE_PROMETHEUS_STACK_VERSION:-66.3.1}"
NAMESPACE="nlpmodel-e2e"
OPERATOR_IMAGE="nlpmodel-operator:e2e"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-19090}"
SCENARIO_TIMEOUT_S="${SCENARIO_TIMEOUT_S:-1800}"

PYTHON="${PYTHON:-$repo/.venv/bin/python}"
NLPCTL="${NLPCTL:-$repo/.venv/bin/nlpctl}"
KUBECONFIG_FILE="${KUBECONFIG_FILE:-$repo/.e2e/kubeconfig}"
export KUBECONFIG="$KUBECONFIG_FILE"

log() { printf '\n=== %s ===\n' "$*"; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 1; }

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (see e2e/kind/README.md)"
  done
}

# helm and kubectl: the pinned binaries the chart tests use (harness/src/nlpmodel_harness/k8stools.py), unless set.
tools() {
  [[ -x "$PYTHON" ]] || die "no $PYTHON: run \`make deps\` first"
  local paths
  paths="$("$PYTHON" -m nlpmodel_harness.k8stools)"
  HELM="${HELM:-$(awk '$1 == "helm" {print $2}' <<<"$paths")}"
  KUBECTL="${KUBECTL:-$(awk '$1 == "kubectl" {print $2}' <<<"$paths")}"
}

kc() { "$KUBECTL" "$@"; }

wait_deployments() {  # namespace [timeout]
  kc -n "$1" wait deployment --all --for=condition=Available --timeout="${2:-600s}"
}

# The image the engine renders for the scenario's model (our transformers runtime).
runtime_image() {
  "$NLPCTL" render "$here/scenario/1-stable.yaml" |
    "$PYTHON" -c 'import sys, yaml; print(next(d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "InferenceService")["spec"]["predictor"]["model"]["image"])'
}

create_cluster() {
  log "kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
  mkdir -p "$(dirname "$KUBECONFIG_FILE")"
  if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --config "$here/cluster.yaml" \
      --kubeconfig "$KUBECONFIG_FILE" --wait 120s
  fi
  kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE"
}

install_cert_manager() {
  log "cert-manager $CERT_MANAGER_VERSION (KServe's webhooks)"
  kc apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  wait_deployments cert-manager
}

install_gateway() {
  log "Gateway API $GATEWAY_API_VERSION CRDs and Envoy Gateway $ENVOY_GATEWAY_VERSION"
  kc apply --server-side -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml"
  "$HELM" upgrade --install eg oci://docker.io/envoyproxy/gateway-helm --version "$ENVOY_GATEWAY_VERSION" \
    --namespace envoy-gateway-system --create-namespace --skip-crds --wait --timeout 10m
}

install_kserve() {
  log "KServe $KSERVE_VERSION, Standard mode by default"
  local base="https://github.com/kserve/kserve/releases/download/$KSERVE_VERSION"
  kc apply --server-side -f "$base/kserve.yaml"
  wait_deployments kserve
  kc apply --server-side -f "$base/kserve-cluster-resources.yaml"
  # Standard (raw Deployment) mode for every InferenceService, no Knative, no Ingress of KServe's own:
  # our HTTPRoute is the way in.
  kc -n kserve get configmap inferenceservice-config -o json | "$PYTHON" -c '
import json, sys
cm = json.load(sys.stdin)
deploy = json.loads(cm["data"].get("deploy", "{}"))
deploy["defaultDeploymentMode"] = "Standard"
ingress = json.loads(cm["data"].get("ingress", "{}"))
ingress["disableIngressCreation"] = True
cm["data"]["deploy"], cm["data"]["ingress"] = json.dumps(deploy), json.dumps(ingress)
for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
    cm["metadata"].pop(key, None)
json.dump(cm, sys.stdout)
' | kc apply -f -
  kc -n kserve rollout restart deployment kserve-controller-manager
  wait_deployments kserve
}

install_prometheus() {
  log "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION (Prometheus + prometheus-operator)"
  "$HELM" upgrade --install kube-prometheus-stack kube-prometheus-stack \
    --repo https://prometheus-community.github.io/helm-charts --version "$KUBE_PROMETHEUS_STACK_VERSION" \
    --namespace monitoring --create-namespace -f "$here/prometheus-values.yaml" --wait --timeout 10m
}

load_images() {
  log "images: $OPERATOR_IMAGE (Dockerfile) and the transformers runtime"
  docker build -t "$OPERATOR_IMAGE" "$repo"
  kind load docker-image "$OPERATOR_IMAGE" --name "$CLUSTER"
  local runtime
  runtime="$(runtime_image)"
  # runtimes/transformers/Dockerfile builds from the repository root (it needs runtimes/metrics too).
  docker build -f "$repo/runtimes/transformers/Dockerfile" -t "$runtime" "$repo"
  kind load docker-image "$runtime" --name "$CLUSTER"
}

install_operator() {
  log "our chart (CRDs, RBAC, operator, ServiceMonitor, PrometheusRule, ClusterServingRuntimes)"
  "$HELM" upgrade --install nlpmodel-operator "$repo/charts/nlpmodel-operator" \
    --namespace nlpmodel-system --create-namespace -f "$here/values.yaml" --wait --timeout 5m
  kc get clusterservingruntime nlpmodel-transformers >/dev/null ||
    die "the chart installed no ClusterServingRuntime nlpmodel-transformers (run make chart-sync)"
}

deploy_workload() {
  log "namespace, Gateway and load generator"
  kc apply -f "$here/manifests/namespace.yaml"
  kc apply -f "$here/manifests/gateway.yaml"
  kc -n "$NAMESPACE" wait gateway/e2e --for=condition=Programmed --timeout=300s
  local svc
  svc="$(kc -n envoy-gateway-system get service \
    -l "gateway.envoyproxy.io/owning-gateway-name=e2e,gateway.envoyproxy.io/owning-gateway-namespace=$NAMESPACE" \
    -o jsonpath='{.items[0].metadata.name}')"
  [[ -n "$svc" ]] || die "Envoy Gateway created no Service for Gateway $NAMESPACE/e2e"
  kc apply -f "$here/manifests/loadgen.yaml"
  kc -n "$NAMESPACE" set env deployment/loadgen "TARGET=http://$svc.envoy-gateway-system.svc/v1/completions"
}

up() {
  need docker kind
  tools
  create_cluster
  install_cert_manager
  install_gateway
  install_kserve
  install_prometheus
  load_images
  install_operator
  deploy_workload
}

port_forward_pid=""
stop_port_forward() {
  if [[ -n "$port_forward_pid" ]]; then
    kill "$port_forward_pid" 2>/dev/null || true
    wait "$port_forward_pid" 2>/dev/null || true
    port_forward_pid=""
  fi
}

prometheus_query() {  # promql -> the JSON result list
  curl -sf --get "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$1" |
    "$PYTHON" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["data"]["result"]))'
}

run_tests() {
  tools
  log "port-forward to Prometheus (the demo's TTFT view and the alert check)"
  kc -n monitoring port-forward svc/kube-prometheus-stack-prometheus "$PROMETHEUS_PORT:9090" >/dev/null &
  port_forward_pid=$!
  local i
  for i in $(seq 1 30); do
    curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" >/dev/null && break
    [[ "$i" == 30 ]] && die "Prometheus is not reachable through the port-forward"
    sleep 2
  done

  log "scenario: first revision Ready, slow canary rolled back, healthy canary promoted (real pods)"
  "$NLPCTL" demo --cluster --no-install --kubeconfig "$KUBECONFIG_FILE" --scenario "$here/scenario" \
    --namespace "$NAMESPACE" --prometheus-url "http://127.0.0.1:$PROMETHEUS_PORT" --plain \
    --timeout "$SCENARIO_TIMEOUT_S" --keep

  log "the chart's NLPModelRolledBack alert fired for the rollback"
  local alerts=""
  for i in $(seq 1 40); do
    alerts="$(prometheus_query "ALERTS{alertname=\"NLPModelRolledBack\",namespace=\"$NAMESPACE\",model=\"chat\"}")"
    [[ "$alerts" != "[]" ]] && break
    sleep 3
  done
  [[ "$alerts" != "[]" ]] || die "NLPModelRolledBack did not fire after the rollback"
  printf '%s\n' "$alerts"

  log "nlpctl wait: the promoted model reports promoted"
  "$NLPCTL" wait chat -n "$NAMESPACE" --for=promoted --timeout 60s --kubeconfig "$KUBECONFIG_FILE"
  stop_port_forward
}

down() {
  need kind
  log "deleting kind cluster $CLUSTER"
  kind delete cluster --name "$CLUSTER"
}

delete_on_exit=0
cleanup() {
  stop_port_forward
  if [[ "$delete_on_exit" == 1 ]]; then
    down
  fi
}

main() {
  trap cleanup EXIT
  case "${1:-all}" in
    up) up ;;
    test) run_tests ;;
    down) down ;;
    all)
      [[ "${KEEP:-0}" == 1 ]] || delete_on_exit=1
      up
      run_tests
      ;;
    *) die "usage: $0 [up|test|down|all]" ;;
  esac
}

main "$@"
