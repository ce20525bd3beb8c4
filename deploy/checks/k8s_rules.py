#!/usr/bin/env python3
"""payd's own rules for the Kubernetes manifests, on `kubectl kustomize` output.

Run by deploy/checks/k8s.sh (offline: no cluster, no network). Standard library + PyYAML.

  k8s_rules.py split RENDERED OUTDIR    one file per object: OUTDIR/core/ for
                                        kubernetes-validate, OUTDIR/keda-<kind>/ for
                                        check-jsonschema; prints "<core> <keda>" counts
  k8s_rules.py canaries RENDERED OUTDIR known-bad copies of the rendering's objects, each
                                        of which the validators must reject
  k8s_rules.py check TARGET RENDERED    the rules below; TARGET is base, dev or prod

The rules (each prints one `ok` or `FAIL` line):
  - the ScaledObject scales the worker Deployment, on rabbitmq triggers for the queues
    payd.payments and payd.transfers, mode QueueLength, a positive value, and an
    authenticationRef to a TriggerAuthentication that exists and reads the same Secret key
    as the workers' PAYD_AMQP_URL;
  - no HorizontalPodAutoscaler targets the worker (KEDA owns its HPA);
  - one HPA targets the api Deployment, on CPU, with minReplicas >= 2 (base, prod; dev: 1);
  - every payd container (image `payd`) has requests and limits for CPU and memory,
    runs as non-root uid 10001 with a read-only root filesystem (and /tmp on an emptyDir),
    no privilege escalation, no capabilities, the RuntimeDefault seccomp profile; the
    long-running ones have readiness and liveness probes, the api and worker a startupProbe
    of at least 60 s;
  - the api's and the worker's terminationGracePeriodSeconds exceed preStop sleep +
    PAYD_SHUTDOWN_GRACE_MS + the slowest call (PAYD_PROCESSOR_TIMEOUT_MS, or
    PAYD_WEBHOOK_TIMEOUT_MS if longer), each read as the container will see it (env,
    envFrom ConfigMaps, else the binary's default);
  - one migration Job runs `payd migrate` with PAYD_DATABASE_URL from a Secret;
  - every ConfigMap / Secret referenced exists in the rendering with the keys referenced
    (in prod: except `payd-secrets`, which the operator supplies and which must then not be
    rendered), and no rendered value is still a REPLACE_ME placeholder (dev, prod);
  - labels: app.kubernetes.io/name payd and component api|worker|migrate on payd's
    workloads and pods, selectors that select their own pods, the api Service and the PDBs
    selecting what they should;
  - NetworkPolicies: ingress to the api on 9999 and to the worker on 9998; in dev, every
    store pod is isolated for ingress and reachable only from payd's api/worker/migrate
    pods (RabbitMQ also from KEDA's operator); in prod, every payd pod is isolated for
    egress and may reach only DNS, the stores' ports and HTTP(S);
  - dev runs one api and one worker, with the HPA's and KEDA's minimum at 1.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from typing import Any, Callable, Iterable

import yaml

PAYD_IMAGE = "payd"
PAYD_UID = 10001
QUEUES = {"payd.payments", "payd.transfers"}
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
RUN_TO_COMPLETION = {"Job", "CronJob"}
# The binary's defaults (crates/payd-cli/src/args.rs), when a variable is not set.
BINARY_DEFAULTS_MS = {
    "PAYD_SHUTDOWN_GRACE_MS": 10_000,
    "PAYD_PROCESSOR_TIMEOUT_MS": 10_000,
    "PAYD_WEBHOOK_TIMEOUT_MS": 10_000,
}
# The Secret the prod operator creates (deploy/k8s/README.md).
EXTERNAL_SECRETS = {"prod": {"payd-secrets"}}
PLACEHOLDER = "REPLACE_ME"
# In prod, the only ports payd's pods may connect to.
PROD_EGRESS_PORTS = {53, 5432, 5671, 5672, 6379, 6380, 443, 80}
STORE_PEERS = {"api", "worker", "migrate"}


def load(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def ident(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# ---------------------------------------------------------------- split and canaries


def split(rendered: str, outdir: str) -> None:
    objects = load(rendered)
    counts = {"core": 0, "keda": 0}
    for index, obj in enumerate(objects):
        kind = obj["kind"]
        if kind in KEDA_KINDS and obj.get("apiVersion", "").startswith("keda.sh/"):
            sub, key = f"keda-{kind.lower()}", "keda"
        else:
            sub, key = "core", "core"
        os.makedirs(os.path.join(outdir, sub), exist_ok=True)
        name = f"{index:03d}-{kind.lower()}-{obj['metadata']['name']}.yaml"
        with open(os.path.join(outdir, sub, name), "w", encoding="utf-8") as f:
            yaml.safe_dump(obj, f, sort_keys=False)
        counts[key] += 1
    print(counts["core"], counts["keda"])


def canaries(rendered: str, outdir: str) -> None:
    """Writes outdir/<validator>/<what>.yaml, each a copy with one thing broken."""
    objects = load(rendered)

    def first(kind: str) -> dict[str, Any]:
        for obj in objects:
            if obj["kind"] == kind:
                return copy.deepcopy(obj)
        raise SystemExit(f"canaries: no {kind} in {rendered}")

    cases: dict[str, dict[str, dict[str, Any]]] = {
        "keda-scaledobject": {},
        "keda-triggerauthentication": {},
        "core": {},
    }
    so = first("ScaledObject")
    so["spec"]["triggers"][0]["metadata"]["mode"] = "QueueDepth"
    cases["keda-scaledobject"]["mode-not-an-enum-value"] = so
    so = first("ScaledObject")
    del so["spec"]["triggers"][0]["metadata"]["queueName"]
    cases["keda-scaledobject"]["rabbitmq-without-queueName"] = so
    so = first("ScaledObject")
    so["spec"]["triggers"][0]["metadata"]["mode"] = "MessageRate"
    cases["keda-scaledobject"]["messagerate-over-amqp"] = so
    so = first("ScaledObject")
    so["spec"]["minReplicaCount"] = "2"
    cases["keda-scaledobject"]["minReplicaCount-a-string"] = so
    so = first("ScaledObject")
    del so["spec"]["scaleTargetRef"]
    cases["keda-scaledobject"]["no-scaleTargetRef"] = so
    so = first("ScaledObject")
    so["spec"]["triggers"][0]["authRef"] = so["spec"]["triggers"][0].pop("authenticationRef")
    cases["keda-scaledobject"]["unknown-trigger-field"] = so
    ta = first("TriggerAuthentication")
    del ta["spec"]["secretTargetRef"][0]["key"]
    cases["keda-triggerauthentication"]["secretTargetRef-without-key"] = ta
    ta = first("TriggerAuthentication")
    ta["spec"] = {}
    cases["keda-triggerauthentication"]["empty-spec"] = ta
    dep = first("Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    cases["core"]["deployment-misspelt-field"] = dep
    dep = first("Deployment")
    dep["spec"]["replicas"] = "two"
    cases["core"]["deployment-replicas-a-string"] = dep
    for sub, named in cases.items():
        os.makedirs(os.path.join(outdir, sub), exist_ok=True)
        for what, obj in named.items():
            with open(os.path.join(outdir, sub, f"{what}.yaml"), "w", encoding="utf-8") as f:
                yaml.safe_dump(obj, f, sort_keys=False)


# ---------------------------------------------------------------- helpers for the rules


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity (`500m`, `2`, `128Mi`, `1G`) as a number of base units."""
    text = str(value)
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([a-zA-Z]*)", text)
    if not match:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = float(match.group(1)), match.group(2)
    factors = {
        "": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    }
    if suffix not in factors:
        raise ValueError(f"unknown quantity suffix: {text!r}")
    return number * factors[suffix]


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector against a label set (an empty selector selects everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_requires(selector: dict[str, Any], key: str) -> set[str] | None:
    """The values a selector allows for `key`, or None if it allows any."""
    allowed: set[str] | None = None
    value = (selector.get("matchLabels") or {}).get(key)
    if value is not None:
        allowed = {value}
    for expr in selector.get("matchExpressions") or []:
        if expr["key"] == key and expr["operator"] == "In":
            values = set(expr.get("values") or [])
            allowed = values if allowed is None else allowed & values
    return allowed


def pod_template(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] not in POD_KINDS:
        return None
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec.get("template")


def image_name(image: str) -> str:
    """`registry.example.com:5000/team/payd:0.1@sha256:..` -> `payd`."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


class Rendering:
    def __init__(self, target: str, objects: list[dict[str, Any]]):
        self.target = target
        self.objects = objects

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any] | None:
        for obj in self.of(kind):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    def workloads(self) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
        for obj in self.objects:
            template = pod_template(obj)
            if template is not None:
                yield obj, template

    def payd_containers(self) -> Iterable[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
        for obj, template in self.workloads():
            for container in template["spec"].get("containers", []) + template["spec"].get(
                "initContainers", []
            ):
                if image_name(container.get("image", "")) == PAYD_IMAGE:
                    yield obj, template, container

    def component(self, component: str, kind: str = "Deployment") -> list[dict[str, Any]]:
        return [
            o
            for o in self.of(kind)
            if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == component
            and (o["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == "payd"
        ]

    def config_value(self, container: dict[str, Any], name: str) -> str | None:
        """The value `name` has in the container: env wins over envFrom (later envFrom wins
        over earlier); valueFrom a ConfigMap key is resolved, a Secret's is not."""
        for env in container.get("env") or []:
            if env["name"] == name:
                if "value" in env:
                    return str(env["value"])
                ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
                if ref:
                    cm = self.named("ConfigMap", ref["name"])
                    return None if cm is None else (cm.get("data") or {}).get(ref["key"])
                return None
        value = None
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef")
            if not ref:
                continue
            cm = self.named("ConfigMap", ref["name"])
            if cm is None:
                continue
            key = name[len(source["prefix"]):] if source.get("prefix") else name
            if source.get("prefix") and not name.startswith(source["prefix"]):
                continue
            if key in (cm.get("data") or {}):
                value = str(cm["data"][key])
        return value


class Report:
    def __init__(self, target: str):
        self.target = target
        self.failures = 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            print(f"  ok    [{self.target}] {what}")
        else:
            self.failures += 1
            print(f"  FAIL  [{self.target}] {what}" + (f": {detail}" if detail else ""))
        return ok

    def each(self, what: str, problems: list[str]) -> None:
        self.check(not problems, what, "; ".join(problems))


# ---------------------------------------------------------------- the rules


def rule_keda(r: Rendering, rep: Report) -> None:
    workers = r.component("worker")
    rep.check(len(workers) == 1, "one worker Deployment", f"found {len(workers)}")
    scaled = r.of("ScaledObject")
    rep.check(len(scaled) == 1, "one KEDA ScaledObject", f"found {len(scaled)}")
    if len(workers) != 1 or len(scaled) != 1:
        return
    worker, so = workers[0], scaled[0]
    spec = so["spec"]
    ref = spec.get("scaleTargetRef") or {}
    rep.check(
        ref.get("name") == worker["metadata"]["name"]
        and ref.get("kind", "Deployment") == "Deployment"
        and ref.get("apiVersion", "apps/v1") == "apps/v1",
        "the ScaledObject targets the worker Deployment",
        f"scaleTargetRef {ref}",
    )
    minimum, maximum = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    rep.check(
        1 <= minimum <= maximum,
        "KEDA keeps 1 <= minReplicaCount <= maxReplicaCount (workers never scale to zero)",
        f"min {minimum}, max {maximum}",
    )
    triggers = spec.get("triggers") or []
    problems = []
    queues = set()
    for i, trigger in enumerate(triggers):
        meta = trigger.get("metadata") or {}
        where = f"trigger {i} ({trigger.get('name', meta.get('queueName'))})"
        if trigger.get("type") != "rabbitmq":
            problems.append(f"{where}: type {trigger.get('type')!r}, not rabbitmq")
            continue
        queues.add(meta.get("queueName"))
        if meta.get("mode") != "QueueLength":
            problems.append(f"{where}: mode {meta.get('mode')!r}, not QueueLength")
        try:
            if not float(meta.get("value", "")) > 0:
                problems.append(f"{where}: value {meta.get('value')!r} is not positive")
        except ValueError:
            problems.append(f"{where}: value {meta.get('value')!r} is not a number")
    rep.each("every trigger is rabbitmq, mode QueueLength, with a positive value", problems)
    rep.check(
        QUEUES <= queues,
        f"the triggers watch {', '.join(sorted(QUEUES))}",
        f"queues {sorted(q for q in queues if q)}",
    )
    # The references: trigger -> TriggerAuthentication -> Secret key, the workers' own.
    worker_amqp = None
    for container in worker["spec"]["template"]["spec"]["containers"]:
        for env in container.get("env") or []:
            if env["name"] == "PAYD_AMQP_URL":
                worker_amqp = (env.get("valueFrom") or {}).get("secretKeyRef")
    problems = []
    for i, trigger in enumerate(triggers):
        auth = trigger.get("authenticationRef")
        if not auth:
            problems.append(f"trigger {i}: no authenticationRef")
            continue
        if auth.get("kind", "TriggerAuthentication") != "TriggerAuthentication":
            problems.append(f"trigger {i}: authenticationRef kind {auth.get('kind')}")
            continue
        ta = r.named("TriggerAuthentication", auth["name"])
        if ta is None:
            problems.append(f"trigger {i}: TriggerAuthentication {auth['name']!r} not rendered")
            continue
        hosts = [s for s in ta["spec"].get("secretTargetRef") or [] if s.get("parameter") == "host"]
        if len(hosts) != 1:
            problems.append(f"{ident(ta)}: no secretTargetRef for the `host` parameter")
            continue
        host = hosts[0]
        if not worker_amqp or (host["name"], host["key"]) != (worker_amqp["name"], worker_amqp["key"]):
            problems.append(
                f"{ident(ta)} reads {host['name']}/{host['key']}, the workers' PAYD_AMQP_URL "
                f"comes from {worker_amqp}"
            )
    rep.each(
        "each trigger's authenticationRef exists and reads the workers' PAYD_AMQP_URL as host",
        problems,
    )


def rule_hpas(r: Rendering, rep: Report) -> None:
    workers = {o["metadata"]["name"] for o in r.component("worker")}
    apis = {o["metadata"]["name"] for o in r.component("api")}
    hpas = r.of("HorizontalPodAutoscaler")
    on_worker = [ident(h) for h in hpas if h["spec"]["scaleTargetRef"]["name"] in workers]
    rep.check(not on_worker, "no HorizontalPodAutoscaler of ours targets the worker (KEDA's does)",
              ", ".join(on_worker))
    on_api = [
        h
        for h in hpas
        if h["spec"]["scaleTargetRef"]["name"] in apis
        and h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
        and h["spec"]["scaleTargetRef"].get("apiVersion") == "apps/v1"
    ]
    if not rep.check(len(on_api) == 1 and len(apis) == 1, "one HPA targets the api Deployment",
                     f"{len(on_api)} HPA(s) on {sorted(apis)}"):
        return
    hpa = on_api[0]["spec"]
    want = 1 if r.target == "dev" else 2
    minimum = hpa.get("minReplicas", 1)
    rep.check(
        (minimum == 1) if r.target == "dev" else (minimum >= want),
        f"the api HPA's minReplicas is {'1' if r.target == 'dev' else '>= 2'}",
        f"minReplicas {minimum}",
    )
    rep.check(hpa["maxReplicas"] >= minimum, "the api HPA's maxReplicas >= minReplicas",
              f"{hpa['maxReplicas']} < {minimum}")
    cpu = [
        m for m in hpa.get("metrics") or []
        if m["type"] == "Resource" and m["resource"]["name"] == "cpu"
    ]
    rep.check(bool(cpu), "the api HPA scales on CPU utilization")
    api = r.component("api")[0]
    replicas = api["spec"].get("replicas", 1)
    rep.check(minimum <= replicas <= hpa["maxReplicas"],
              "the api Deployment's replicas are within the HPA's range",
              f"replicas {replicas}, HPA {minimum}..{hpa['maxReplicas']}")
    so = r.of("ScaledObject")
    if so and r.component("worker"):
        replicas = r.component("worker")[0]["spec"].get("replicas", 1)
        lo, hi = so[0]["spec"].get("minReplicaCount", 0), so[0]["spec"].get("maxReplicaCount", 100)
        rep.check(lo <= replicas <= hi, "the worker Deployment's replicas are within KEDA's range",
                  f"replicas {replicas}, KEDA {lo}..{hi}")
    if r.target == "dev":
        counts = {
            name: r.component(name)[0]["spec"].get("replicas", 1)
            for name in ("api", "worker") if r.component(name)
        }
        rep.check(counts == {"api": 1, "worker": 1}, "dev runs one api and one worker", str(counts))


def effective(container: dict[str, Any], pod: dict[str, Any], field: str) -> Any:
    value = (container.get("securityContext") or {}).get(field)
    if value is None:
        value = (pod.get("securityContext") or {}).get(field)
    return value


def rule_containers(r: Rendering, rep: Report) -> None:
    found = list(r.payd_containers())
    rep.check(bool(found), "the rendering has payd containers")
    for obj, template, container in found:
        pod = template["spec"]
        where = f"{ident(obj)} container {container['name']}"
        problems = []
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if res not in (resources.get(kind) or {}):
                    problems.append(f"no {res} {kind[:-1]}")
        for res in ("cpu", "memory"):
            try:
                req = parse_quantity((resources.get("requests") or {})[res])
                lim = parse_quantity((resources.get("limits") or {})[res])
                if req > lim:
                    problems.append(f"{res} request above its limit")
            except (KeyError, ValueError):
                pass
        if effective(container, pod, "runAsNonRoot") is not True:
            problems.append("runAsNonRoot is not true")
        if effective(container, pod, "runAsUser") != PAYD_UID:
            problems.append(f"runAsUser is not {PAYD_UID}")
        sc = container.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append("readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append("capabilities do not drop ALL")
        if (sc.get("capabilities") or {}).get("add"):
            problems.append("capabilities added")
        seccomp = effective(container, pod, "seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            problems.append("seccompProfile is not RuntimeDefault")
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):
            problems.append("no emptyDir on /tmp")
        if obj["kind"] not in RUN_TO_COMPLETION:
            for probe in ("readinessProbe", "livenessProbe"):
                if not container.get(probe):
                    problems.append(f"no {probe}")
        rep.each(f"{where}: resources, hardening, probes", problems)


def rule_shutdown(r: Rendering, rep: Report) -> None:
    for component in ("api", "worker"):
        for obj in r.component(component):
            pod = obj["spec"]["template"]["spec"]
            grace = pod.get("terminationGracePeriodSeconds", 30)
            for container in pod["containers"]:
                if image_name(container.get("image", "")) != PAYD_IMAGE:
                    continue
                where = f"{ident(obj)} container {container['name']}"
                pre_stop = (container.get("lifecycle") or {}).get("preStop")
                if pre_stop and "sleep" not in pre_stop:
                    rep.check(False, f"{where}: preStop is a sleep (its length is known)",
                              f"preStop {sorted(pre_stop)}")
                    continue
                sleep_s = (pre_stop or {}).get("sleep", {}).get("seconds", 0)
                values = {}
                for name, default in BINARY_DEFAULTS_MS.items():
                    raw = r.config_value(container, name)
                    values[name] = int(raw) if raw is not None else default
                slowest = max(values["PAYD_PROCESSOR_TIMEOUT_MS"], values["PAYD_WEBHOOK_TIMEOUT_MS"])
                need_s = sleep_s + (values["PAYD_SHUTDOWN_GRACE_MS"] + slowest) / 1000
                rep.check(
                    grace > need_s,
                    f"{where}: terminationGracePeriodSeconds {grace} > preStop {sleep_s} s + "
                    f"shutdown grace {values['PAYD_SHUTDOWN_GRACE_MS']} ms + slowest call "
                    f"{slowest} ms",
                    f"needs more than {need_s:g} s",
                )
                if component == "api":
                    rep.check(sleep_s > 0, f"{where}: a preStop sleep covers endpoint removal",
                              "no preStop sleep")
                startup = container.get("startupProbe")
                window = (
                    startup.get("failureThreshold", 3) * startup.get("periodSeconds", 10)
                    if startup else 0
                )
                rep.check(window >= 60, f"{where}: a startupProbe covers >= 60 s of migrations",
                          f"{window} s")


def rule_migrate(r: Rendering, rep: Report) -> None:
    jobs = r.component("migrate", kind="Job")
    if not rep.check(len(jobs) == 1, "one migration Job", f"found {len(jobs)}"):
        return
    pod = jobs[0]["spec"]["template"]["spec"]
    payd = [c for c in pod["containers"] if image_name(c.get("image", "")) == PAYD_IMAGE]
    ok = len(payd) == 1 and (payd[0].get("args") or payd[0].get("command") or [None])[0] == "migrate"
    rep.check(ok, "the migration Job runs `payd migrate`",
              str([c.get("args") for c in payd]))
    if payd:
        url = [e for e in payd[0].get("env") or [] if e["name"] == "PAYD_DATABASE_URL"]
        rep.check(bool(url) and "secretKeyRef" in (url[0].get("valueFrom") or {}),
                  "the migration Job reads PAYD_DATABASE_URL from a Secret")
    rep.check(pod.get("restartPolicy") in ("Never", "OnFailure"),
              "the migration Job's pods do not restart forever")


def references(template: dict[str, Any]) -> Iterable[tuple[str, str, str | None, bool]]:
    """(kind, name, key or None, optional) of every ConfigMap/Secret a pod uses."""
    pod = template["spec"]
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if field in source:
                    ref = source[field]
                    yield kind, ref["name"], ref["key"], bool(ref.get("optional"))
        for source in container.get("envFrom") or []:
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in source:
                    ref = source[field]
                    yield kind, ref["name"], None, bool(ref.get("optional"))
    for volume in pod.get("volumes") or []:
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"], None, bool(volume["configMap"].get("optional"))
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"], None, bool(volume["secret"].get("optional"))


def rule_references(r: Rendering, rep: Report) -> None:
    external = EXTERNAL_SECRETS.get(r.target, set())
    problems = []
    refs: list[tuple[str, str, str, str | None, bool]] = []
    for obj, template in r.workloads():
        refs += [(ident(obj), *ref) for ref in references(template)]
    for ta in r.of("TriggerAuthentication"):
        for s in ta["spec"].get("secretTargetRef") or []:
            refs.append((ident(ta), "Secret", s["name"], s["key"], False))
    for who, kind, name, key, optional in refs:
        if kind == "Secret" and name in external:
            continue
        target = r.named(kind, name)
        if target is None:
            if not optional:
                problems.append(f"{who}: {kind} {name} is not rendered")
            continue
        keys = set(target.get("data") or {}) | set(target.get("stringData") or {})
        if key is not None and key not in keys and not optional:
            problems.append(f"{who}: {kind} {name} has no key {key}")
    rep.each("every ConfigMap and Secret referenced is rendered, with its keys", problems)
    for name in sorted(external):
        rep.check(r.named("Secret", name) is None,
                  f"the operator's Secret {name} is not rendered (apply never overwrites it)")
    if r.target != "base":
        marked = []
        for obj in r.of("Secret") + r.of("ConfigMap"):
            for key, value in {**(obj.get("data") or {}), **(obj.get("stringData") or {})}.items():
                if PLACEHOLDER in str(value):
                    marked.append(f"{ident(obj)}.{key}")
        rep.each(f"no rendered value is still a {PLACEHOLDER} placeholder", marked)


def rule_labels(r: Rendering, rep: Report) -> None:
    problems = []
    for obj, template in r.workloads():
        selector = obj["spec"].get("selector")
        if selector is not None and not selector_matches(selector, template["metadata"].get("labels") or {}):
            problems.append(f"{ident(obj)}: its selector does not select its own pods")
    rep.each("every workload's selector selects its own pod template", problems)
    problems = []
    for obj, template, _ in r.payd_containers():
        if (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/name") != "payd":
            continue  # the simulated processors run the payd image but are not payd
        for where, labels in (("object", obj["metadata"].get("labels") or {}),
                              ("pod template", template["metadata"].get("labels") or {})):
            if labels.get("app.kubernetes.io/component") not in {"api", "worker", "migrate"}:
                problems.append(f"{ident(obj)} {where}: component "
                                f"{labels.get('app.kubernetes.io/component')!r}")
            if labels.get("app.kubernetes.io/name") != "payd":
                problems.append(f"{ident(obj)} {where}: name {labels.get('app.kubernetes.io/name')!r}")
    rep.each("payd's workloads and pods are labelled name=payd, component=api|worker|migrate",
             problems)
    pods = {
        ident(obj): template["metadata"].get("labels") or {} for obj, template in r.workloads()
    }
    apis = [ident(o) for o in r.component("api")]
    for svc in r.of("Service"):
        if (svc["metadata"].get("labels") or {}).get("app.kubernetes.io/component") != "api":
            continue
        chosen = sorted(w for w, labels in pods.items()
                        if selector_matches({"matchLabels": svc["spec"]["selector"]}, labels))
        rep.check(chosen == sorted(apis), f"{ident(svc)} selects the api pods only", str(chosen))
        ports = {p["port"] for p in svc["spec"]["ports"]}
        rep.check(9999 in ports, f"{ident(svc)} serves port 9999", str(ports))
    for pdb in r.of("PodDisruptionBudget"):
        chosen = [w for w, labels in pods.items() if selector_matches(pdb["spec"]["selector"], labels)]
        rep.check(len(chosen) == 1, f"{ident(pdb)} selects one workload's pods", str(chosen))


def policy_selects(policy: dict[str, Any], labels: dict[str, str], kind: str) -> bool:
    types = policy["spec"].get("policyTypes") or ["Ingress"]
    return kind in types and selector_matches(policy["spec"].get("podSelector"), labels)


def ports_of(rule: dict[str, Any]) -> set[int] | None:
    """The numeric ports a rule allows, or None for all ports."""
    if not rule.get("ports"):
        return None
    return {p["port"] for p in rule["ports"] if isinstance(p.get("port"), int)}


def rule_network(r: Rendering, rep: Report) -> None:
    policies = r.of("NetworkPolicy")
    pods = {ident(obj): template["metadata"].get("labels") or {} for obj, template in r.workloads()}

    def ingress_ports(labels: dict[str, str]) -> set[int] | None:
        allowed: set[int] = set()
        for policy in policies:
            if policy_selects(policy, labels, "Ingress"):
                for rule in policy["spec"].get("ingress") or []:
                    ports = ports_of(rule)
                    if ports is None:
                        return None
                    allowed |= ports
        return allowed

    for component, port in (("api", 9999), ("worker", 9998)):
        for obj in r.component(component):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            isolated = any(policy_selects(p, labels, "Ingress") for p in policies)
            allowed = ingress_ports(labels)
            rep.check(isolated and allowed is not None and port in allowed,
                      f"{ident(obj)} is isolated for ingress, with port {port} open",
                      f"isolated {isolated}, ports {allowed}")

    if r.target == "dev":
        stores = [
            (name, labels) for name, labels in pods.items()
            if labels.get("app.kubernetes.io/component") == "store"
        ]
        rep.check(len(stores) == 3, "dev runs three stores (PostgreSQL, RabbitMQ, Redis)",
                  str([n for n, _ in stores]))
        for name, labels in stores:
            selecting = [p for p in policies if policy_selects(p, labels, "Ingress")]
            problems = [] if selecting else ["no ingress policy selects it"]
            for policy in selecting:
                for rule in policy["spec"].get("ingress") or []:
                    peers = rule.get("from")
                    if not peers:
                        problems.append(f"{ident(policy)}: a rule open to every source")
                    for peer in peers or []:
                        if "ipBlock" in peer:
                            problems.append(f"{ident(policy)}: an ipBlock peer")
                            continue
                        pod_sel = peer.get("podSelector")
                        if "namespaceSelector" in peer:
                            keda = (labels.get("app.kubernetes.io/name") == "rabbitmq"
                                    and (pod_sel or {}).get("matchLabels", {}).get(
                                        "app.kubernetes.io/name") == "keda-operator"
                                    and peer["namespaceSelector"].get("matchLabels"))
                            if not keda:
                                problems.append(f"{ident(policy)}: a peer in other namespaces")
                            continue
                        names = selector_requires(pod_sel or {}, "app.kubernetes.io/name")
                        components = selector_requires(pod_sel or {}, "app.kubernetes.io/component")
                        if names != {"payd"} or components is None or not components <= STORE_PEERS:
                            problems.append(f"{ident(policy)}: peer {pod_sel} is not payd's "
                                            "api/worker/migrate")
            also = " (and KEDA's operator)" if labels.get("app.kubernetes.io/name") == "rabbitmq" else ""
            rep.each(f"{name} is reachable only from payd's api/worker/migrate pods{also}", problems)

    if r.target == "prod":
        for component in ("api", "worker", "migrate"):
            kind = "Job" if component == "migrate" else "Deployment"
            for obj in r.component(component, kind=kind):
                labels = obj["spec"]["template"]["metadata"]["labels"]
                selecting = [p for p in policies if policy_selects(p, labels, "Egress")]
                problems = [] if selecting else ["no egress policy selects it"]
                allowed: set[int] = set()
                for policy in selecting:
                    for rule in policy["spec"].get("egress") or []:
                        ports = ports_of(rule)
                        if ports is None:
                            problems.append(f"{ident(policy)}: a rule open to every port")
                        else:
                            allowed |= ports
                extra = allowed - PROD_EGRESS_PORTS
                if extra:
                    problems.append(f"ports beyond DNS, the stores and HTTP(S): {sorted(extra)}")
                if 53 not in allowed:
                    problems.append("no DNS")
                if 5432 not in allowed:
                    problems.append("no PostgreSQL")
                rep.each(f"{ident(obj)} is isolated for egress: DNS, stores, HTTP(S) only",
                         problems)


RULES: list[Callable[[Rendering, Report], None]] = [
    rule_keda,
    rule_hpas,
    rule_containers,
    rule_shutdown,
    rule_migrate,
    rule_references,
    rule_labels,
    rule_network,
]


def check(target: str, rendered: str) -> int:
    if target not in {"base", "dev", "prod"}:
        raise SystemExit(f"unknown target {target!r} (base, dev, prod)")
    r = Rendering(target, load(rendered))
    rep = Report(target)
    for rule in RULES:
        try:
            rule(r, rep)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            rep.check(False, f"{rule.__name__} could not run", f"{type(error).__name__}: {error}")
    print(f"  [{target}] {rep.failures} rule(s) failed" if rep.failures else f"  [{target}] all rules hold")
    return 1 if rep.failures else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "split":
        split(argv[1], argv[2])
        return 0
    if len(argv) == 3 and argv[0] == "canaries":
        canaries(argv[1], argv[2])
        return 0
    if len(argv) == 3 and argv[0] == "check":
        return check(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
