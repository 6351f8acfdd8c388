#!/usr/bin/env bash
# `make in-cluster-demo`: the agent as a Deployment. It builds the agent image without a
# registry, starts the testbed with its worker node (a real kubelet and containerd),
# deploys the agent there from the testbed's Podman overlay (kubectl apply -k), runs
# examples/pod.yaml through the virtual node, and shows the pods and the example's logs.
set -euo pipefail
cd "$(dirname "$0")/.."
example=examples/pod.yaml
pod=hello-vkpy
python=.venv/bin/python

echo "== make image: the agent image from Debian's archive and vkpy's wheel"
$python -m vkpy.testing image
echo "== the testbed, its worker node, and the agent's Deployment on it"
$python -m vkpy.testing up
$python -m vkpy.testing worker
$python -m vkpy.testing deploy
. .testbed/env.sh
cleanup() { kubectl delete -f "$example" --ignore-not-found --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== kubectl apply -f $example"
kubectl apply -f "$example"
if ! kubectl wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$pod" --timeout=120s >/dev/null; then
  kubectl describe pod "$pod" >&2
  kubectl -n vkpy-testbed logs deployment/testbed-vkpy --tail=20 >&2
  exit 1
fi
echo "== kubectl -n vkpy-testbed get pods -o wide   (the agent, on the real kubelet)"
kubectl -n vkpy-testbed get pods -o wide
echo "== kubectl get pods -o wide   (the example, on the virtual node)"
kubectl get pods -o wide
echo "== kubectl logs $pod   (the apiserver dials the agent pod's IP)"
kubectl logs "$pod" --all-containers
echo "== done; remove the Deployment with: $python -m vkpy.testing undeploy"
