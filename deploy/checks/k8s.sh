#!/usr/bin/env bash
# Offline check of payd's Kubernetes manifests (deploy/k8s): no cluster, no network.
#
# For the base and every overlay: render it with `kubectl kustomize`; validate every
# rendered object against Kubernetes' OpenAPI schemas with kubernetes-validate (strict:
# unknown fields are errors), except KEDA's ScaledObject and TriggerAuthentication, which
# are CRDs it does not know and are validated with check-jsonschema against
# deploy/k8s/schemas/; then payd's own rules (deploy/checks/k8s_rules.py). Last, canaries:
# deliberately broken copies of the objects that each validator must reject, so that a
# validator that accepts everything (a schema typo, a tool skipping what it cannot read)
# fails this check instead of passing it.
#
# Needs: kubectl (for `kubectl kustomize`), kubernetes-validate and check-jsonschema (PyPI),
# python3 with PyYAML. Usage: deploy/checks/k8s.sh (from anywhere). Exit status 0 when
# everything holds, 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
K8S="$ROOT/deploy/k8s"
RULES="$ROOT/deploy/checks/k8s_rules.py"
SCHEMAS="$K8S/schemas"
# The oldest Kubernetes the manifests support: 1.30 is the first release where the
# preStop `sleep` handler is on by default (beta). kubernetes-validate 1.37.0 bundles
# the schemas of 1.25 to 1.37.
KUBE_VERSION=1.30.0
TARGETS=(base overlays/dev overlays/prod)

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
FAILED=0

step() { printf '\n== %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*"; FAILED=1; }
pass() { printf '  ok    %s\n' "$*"; }

step "tools"
for tool in kubectl kubernetes-validate check-jsonschema python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
python3 -c 'import yaml' 2>/dev/null || { echo "python3 has no PyYAML (pip install pyyaml)" >&2; exit 1; }
pass "kubectl $(kubectl version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'), kubernetes-validate $(kubernetes-validate --version), $(check-jsonschema --version)"

step "the KEDA JSON schemas are valid JSON Schema (their metaschema)"
if check-jsonschema --check-metaschema "$SCHEMAS/keda-scaledobject.json" "$SCHEMAS/keda-triggerauthentication.json" >"$WORK/meta.log" 2>&1; then
  pass "deploy/k8s/schemas/*.json"
else
  cat "$WORK/meta.log"; fail "metaschema"
fi

# kubernetes-validate over one-object files; passes only if every object was checked and
# passed (it merely warns, and exits 0, on a kind it has no schema for).
# Usage: validate_core EXPECTED_COUNT LOG FILE...
validate_core() {
  local expected="$1" log="$2"
  shift 2
  local rc=0
  kubernetes-validate --strict -k "$KUBE_VERSION" "$@" >"$log" 2>&1 || rc=$?
  local passed
  passed="$(grep -c '^INFO .* passed for resource' "$log" || true)"
  if [[ $rc -ne 0 ]] || grep -qE '^(WARN|ERROR|FATAL)' "$log" || [[ "$passed" -ne "$expected" ]]; then
    grep -vE '^INFO' "$log" | sed 's/^/        /'
    return 1
  fi
}

for target in "${TARGETS[@]}"; do
  name="${target##*/}"
  rendered="$WORK/$name.yaml"
  objects="$WORK/$name"

  step "$name: kubectl kustomize deploy/k8s/$target"
  if ! kubectl kustomize "$K8S/$target" >"$rendered" 2>"$WORK/$name.err"; then
    sed 's/^/        /' "$WORK/$name.err"; fail "$name does not render"; continue
  fi
  counts="$(python3 "$RULES" split "$rendered" "$objects")"
  read -r core keda <<<"$counts"
  pass "$name renders $((core + keda)) objects ($core Kubernetes, $keda KEDA)"

  step "$name: kubernetes-validate --strict -k $KUBE_VERSION ($core objects)"
  if validate_core "$core" "$WORK/$name.kv.log" "$objects"/core/*.yaml; then
    pass "$core objects valid against Kubernetes $KUBE_VERSION (strict)"
  else
    fail "$name: kubernetes-validate"
  fi

  step "$name: check-jsonschema, KEDA ScaledObject and TriggerAuthentication"
  for kind in scaledobject triggerauthentication; do
    dir="$objects/keda-$kind"
    if ! compgen -G "$dir/*.yaml" >/dev/null; then
      fail "$name renders no KEDA $kind"; continue
    fi
    if check-jsonschema --schemafile "$SCHEMAS/keda-$kind.json" "$dir"/*.yaml >"$WORK/$name.$kind.log" 2>&1; then
      pass "$(ls "$dir" | wc -l) $kind(s) valid against deploy/k8s/schemas/keda-$kind.json"
    else
      sed 's/^/        /' "$WORK/$name.$kind.log"; fail "$name: KEDA $kind"
    fi
  done

  step "$name: payd's rules (deploy/checks/k8s_rules.py)"
  python3 "$RULES" check "$name" "$rendered" || FAILED=1
done

step "canaries: the validators reject broken copies of the base's objects"
python3 "$RULES" canaries "$WORK/base.yaml" "$WORK/canaries"
for file in "$WORK"/canaries/keda-*/*.yaml; do
  kind="$(basename "$(dirname "$file")")"
  what="$(basename "$file" .yaml)"
  if check-jsonschema --schemafile "$SCHEMAS/$kind.json" "$file" >/dev/null 2>&1; then
    fail "$kind.json accepts a broken object: $what"
  else
    pass "$kind.json rejects: $what"
  fi
done
for file in "$WORK"/canaries/core/*.yaml; do
  what="$(basename "$file" .yaml)"
  if validate_core 1 "$WORK/canary.log" "$file" >/dev/null 2>&1; then
    fail "kubernetes-validate accepts a broken object: $what"
  else
    pass "kubernetes-validate rejects: $what"
  fi
done

echo
if [[ $FAILED -ne 0 ]]; then
  echo "deploy/checks/k8s.sh: FAILED"
  exit 1
fi
echo "deploy/checks/k8s.sh: all checks passed"
