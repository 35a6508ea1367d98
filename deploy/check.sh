#!/usr/bin/env bash
# Validates the deployment: the Kubernetes manifests under deploy/k8s and deploy/Dockerfile.
# Needs Python 3 with pip and access to PyPI (first run only); installs its tools into a venv
# under target/. Exits non-zero on any problem.
#
#   1. consistency of the kustomize tree and the objects (deploy/check_manifests.py): files
#      named by kustomizations exist and every manifest is named, references resolve, probes
#      and listen addresses agree, grace period > preStop + drain, and the NetworkPolicies allow
#      exactly the calls the FAIRCHANCE_<SVC>_URL variables make;
#   2. every manifest against the Kubernetes OpenAPI schemas, strictly (unknown fields fail),
#      for the oldest supported Kubernetes (1.30: preStop sleep) and the newest known;
#   3. checkov's Kubernetes and Dockerfile policies: zero failures allowed; the few skips are
#      annotations / comments on the objects, each with its reason;
#   4. when kustomize or kubectl is on PATH: each overlay rendered, then 1-3 on the result.
#      Without either (neither installs from the registries CI reaches) this step is skipped
#      with a note: the overlays' patches are inline in their kustomization.yaml, so steps
#      1-3 still see every manifest file.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
KUBE_VERSIONS=(1.30.0 1.37.0)
VENV=target/deploy-check-venv
OUT=target/deploy-check

section() { printf '\n==> %s\n' "$*"; }
start=$SECONDS

section "tools (venv $VENV)"
stamp="$VENV/.installed-kv$KUBERNETES_VALIDATE_VERSION-checkov$CHECKOV_VERSION"
if [[ ! -f $stamp ]]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "checkov==$CHECKOV_VERSION"
  touch "$stamp"
fi
PY="$VENV/bin/python"
echo "kubernetes-validate $KUBERNETES_VALIDATE_VERSION, checkov $CHECKOV_VERSION"
mkdir -p "$OUT"

# checkov offline: no guideline mapping download, no PyPI update check.
export BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE
checkov() {
  "$VENV/bin/checkov" --skip-download --quiet --compact "$@"
}

validate_schemas() { # files...
  local v
  for v in "${KUBE_VERSIONS[@]}"; do
    echo "kubernetes $v"
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$@"
  done
}

section "kustomize tree and object consistency"
"$PY" deploy/check_manifests.py tree deploy/k8s

section "schemas (kubernetes-validate --strict)"
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
echo "${#manifests[@]} manifest files"
validate_schemas "${manifests[@]}"

section "checkov: Kubernetes manifests"
checkov -d deploy/k8s --framework kubernetes

section "checkov: Dockerfile"
checkov -f deploy/Dockerfile --framework dockerfile

section "rendered overlays"
render=()
if command -v kustomize >/dev/null 2>&1; then
  render=(kustomize build --load-restrictor LoadRestrictionsNone)
elif command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
  render=(kubectl kustomize --load-restrictor LoadRestrictionsNone)
fi
if ((${#render[@]})); then
  for overlay in deploy/k8s/overlays/*/; do
    name=$(basename "$overlay")
    rendered="$OUT/$name.yaml"
    echo "-- $name (${render[*]})"
    "${render[@]}" "$overlay" >"$rendered"
    "$PY" deploy/check_manifests.py rendered "$rendered"
    validate_schemas "$rendered"
    checkov -f "$rendered" --framework kubernetes
  done
else
  echo "skipped: neither kustomize nor kubectl is on PATH (steps above checked every file)"
fi

section "ok ($((SECONDS - start))s)"
