#!/usr/bin/env bash
# `make demo`: a virtual node backed by Podman runs an example pod, and
# `kubectl logs` reads its output through the node's kubelet API.
set -euo pipefail
cd "$(dirname "$0")/.."
node=vkpy-demo
example=${DEMO_EXAMPLE:-examples/pod.yaml}
pod=${DEMO_POD:-hello-vkpy}

. .testbed/env.sh
log=.testbed/logs/demo-agent.log
echo "== starting the agent: vkpy run --config .testbed/podman.yaml --node-name $node (log: $log)"
.venv/bin/vkpy run --kubeconfig "$KUBECONFIG" --config .testbed/podman.yaml --node-name "$node" \
    >"$log" 2>&1 &
agent=$!
cleanup() {
  kubectl delete -f "$example" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null || true
  echo "== agent stopped"
}
trap cleanup EXIT

ready=""
for _ in $(seq 120); do   # kubectl wait gives up at once while the node does not exist yet
  ready=$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
  [ "$ready" = True ] && break
  sleep 0.5
done
if [ "$ready" != True ]; then
  echo "the node never became Ready; agent log:" >&2; tail -20 "$log" >&2; exit 1
fi
echo "== node $node is Ready"
kubectl get node "$node" -o wide
echo "== kubectl apply -f $example"
kubectl apply -f "$example"
if ! kubectl wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$pod" --timeout=120s >/dev/null; then
  kubectl describe pod "$pod" >&2; tail -20 "$log" >&2; exit 1
fi
echo "== kubectl get pods -o wide"
kubectl get pods -o wide --field-selector "spec.nodeName=$node"
echo "== kubectl logs $pod (through the apiserver and the node's kubelet API)"
kubectl logs "$pod" --all-containers
