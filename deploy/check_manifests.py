"""Consistency checks on the fairchance Kubernetes manifests that schema validation and checkov
do not make. Run by deploy/check.sh; needs PyYAML (checkov brings it).

    python deploy/check_manifests.py tree deploy/k8s          # the kustomize tree as written
    python deploy/check_manifests.py rendered FILE.yaml       # an overlay rendered by kustomize

tree: every file a kustomization names exists, every manifest is named by a kustomization, and
every namespaced object is in the fairchance namespace; then the checks below on the base's
objects (a generated ConfigMap counts as present).

Both: references resolve (ConfigMaps, ServiceAccounts, HPA and PDB targets, Service selectors
and target ports), probes and FAIRCHANCE_LISTEN_ADDR use the container's port (probes the
plaintext health port when FAIRCHANCE_HEALTH_ADDR sets one), Secrets are mounted read-only and
the token and certificate files the environment names are in a mounted Secret, upstream
URLs are https:// exactly when FAIRCHANCE_CLIENT_CA is set, the grace
period outlasts preStop plus FAIRCHANCE_DRAIN_TIMEOUT, and every FAIRCHANCE_<SVC>_URL names a
Service whose pods the NetworkPolicies let this pod reach (egress) and let receive the call
(ingress). Exits 1 with every problem listed.
"""

from __future__ import annotations

import pathlib
import re
import sys
from urllib.parse import urlparse

import yaml

NAMESPACE = "fairchance"
# Settings naming a file the service reads from a mounted Secret.
CREDENTIAL_FILE_KEYS = (
    "FAIRCHANCE_TOKENS_FILE",
    "FAIRCHANCE_CLIENT_TOKEN_FILE",
    "FAIRCHANCE_TLS_CERT",
    "FAIRCHANCE_TLS_KEY",
    "FAIRCHANCE_TLS_CLIENT_CA",
    "FAIRCHANCE_CLIENT_CA",
    "FAIRCHANCE_CLIENT_CERT",
    "FAIRCHANCE_CLIENT_KEY",
)
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)


def load_docs(path: pathlib.Path) -> list[dict]:
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# --------------------------------------------------------------------------- the kustomize tree


def check_tree(root: pathlib.Path) -> tuple[list[dict], set[str]]:
    """Checks references between kustomizations; returns the base's objects and the names of
    the ConfigMaps its generators make."""
    referenced: set[pathlib.Path] = set()
    for kfile in sorted(root.rglob("kustomization.yaml")):
        kdir = kfile.parent
        k = yaml.safe_load(kfile.read_text()) or {}
        for res in k.get("resources", []):
            p = (kdir / res).resolve()
            if p.is_dir():
                if not (p / "kustomization.yaml").is_file():
                    problem(f"{kfile}: resource {res} is a directory without kustomization.yaml")
            elif p.is_file():
                referenced.add(p)
            else:
                problem(f"{kfile}: resource {res} does not exist")
        for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
            for f in gen.get("files", []):
                src = f.split("=", 1)[-1]
                if not (kdir / src).is_file():
                    problem(f"{kfile}: generator {gen.get('name')}: file {src} does not exist")
        for patch in k.get("patches", []):
            if "path" in patch:
                p = (kdir / patch["path"]).resolve()
                referenced.add(p)
                if not p.is_file():
                    problem(f"{kfile}: patch {patch['path']} does not exist")
            elif "patch" not in patch:
                problem(f"{kfile}: a patch with neither path nor patch")
    for f in sorted(root.rglob("*.yaml")):
        if f.name != "kustomization.yaml" and f.resolve() not in referenced:
            problem(f"{f}: no kustomization names it, so it is never deployed")

    base = root / "base"
    objects: list[dict] = []
    generated: set[str] = set()

    def collect(kdir: pathlib.Path) -> None:
        k = yaml.safe_load((kdir / "kustomization.yaml").read_text()) or {}
        for gen in k.get("configMapGenerator", []):
            generated.add(gen["name"])
        for res in k.get("resources", []):
            p = kdir / res
            if p.is_dir():
                collect(p)
            elif p.is_file():
                for obj in load_docs(p):
                    objects.append(obj)
                    ns = obj.get("metadata", {}).get("namespace")
                    if obj.get("kind") not in CLUSTER_SCOPED and ns != NAMESPACE:
                        problem(f"{p}: {name_of(obj)} has namespace {ns!r}, not {NAMESPACE!r}")

    if (base / "kustomization.yaml").is_file():
        collect(base)
    else:
        problem(f"{base}: no kustomization.yaml")
    return objects, generated


# ------------------------------------------------------------------------ the objects themselves


def matches(selector: dict | None, labels: dict) -> bool:
    """matchLabels / matchExpressions (In, NotIn, Exists, DoesNotExist) against labels."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    return total


def env_value(container: dict, key: str) -> str | None:
    for e in container.get("env") or []:
        if e.get("name") == key:
            return e.get("value")
    return None


def port_allowed(rule_ports: list | None, port: int, container_ports: dict[str, int]) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        want = p.get("port")
        if want is None or want == port or container_ports.get(str(want)) == port:
            return True
    return False


def peer_allows(peers: list | None, labels: dict) -> bool:
    """Whether a rule's from/to admits a pod of this namespace with these labels."""
    if peers is None:
        return True
    for peer in peers:
        if "ipBlock" in peer:
            continue
        if "namespaceSelector" in peer:
            # Our own namespace only when the selector picks it by name.
            ns_labels = {"kubernetes.io/metadata.name": NAMESPACE}
            if not matches(peer["namespaceSelector"], ns_labels):
                continue
        if matches(peer.get("podSelector", {}), labels):
            return True
    return False


def policy_allows(policies: list[dict], direction: str, pod_labels: dict, peer_labels: dict,
                  port: int, dest_ports: dict[str, int]) -> bool:
    """Whether traffic in `direction` (Ingress/Egress) for a pod with `pod_labels` to/from a
    peer with `peer_labels` on `port` is allowed by the namespace's NetworkPolicies."""
    selecting = [p for p in policies
                 if matches(p["spec"].get("podSelector", {}), pod_labels)
                 and direction in p["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for p in selecting:
        for rule in p["spec"].get(key) or []:
            if peer_allows(rule.get(peers_key), peer_labels) and port_allowed(
                    rule.get("ports"), port, dest_ports):
                return True
    return False


def check_objects(objects: list[dict], extra_configmaps: set[str], where: str) -> None:
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj.get("kind", "?"), []).append(obj)
    names = lambda kind: {o["metadata"]["name"] for o in by_kind.get(kind, [])}  # noqa: E731
    configmaps = names("ConfigMap") | extra_configmaps
    configmap_data = {o["metadata"]["name"]: o.get("data") or {}
                      for o in by_kind.get("ConfigMap", [])}
    accounts = names("ServiceAccount")
    deployments = by_kind.get("Deployment", [])
    services = {o["metadata"]["name"]: o for o in by_kind.get("Service", [])}
    policies = by_kind.get("NetworkPolicy", [])

    def pods_of(selector: dict) -> list[dict]:
        return [d for d in deployments
                if matches({"matchLabels": selector}, d["spec"]["template"]["metadata"]["labels"])]

    for d in deployments:
        dn = f"{where}: {name_of(d)}"
        spec = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        if not matches(d["spec"]["selector"], labels):
            problem(f"{dn}: selector does not match its pod template labels")
        if spec.get("serviceAccountName") not in accounts:
            problem(f"{dn}: service account {spec.get('serviceAccountName')} is not defined")
        for v in spec.get("volumes") or []:
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                problem(f"{dn}: volume {v['name']}: ConfigMap {v['configMap']['name']} is not defined")
        containers = spec.get("initContainers", []) + spec["containers"]
        for c in containers:
            for ef in c.get("envFrom") or []:
                ref = ef.get("configMapRef")
                if ref and ref["name"] not in configmaps:
                    problem(f"{dn}: {c['name']}: ConfigMap {ref['name']} is not defined")
        server = spec["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in server.get("ports", [])}
        grpc = ports.get("grpc")
        if grpc is None:
            problem(f"{dn}: the server container has no port named grpc")
            continue
        listen = env_value(server, "FAIRCHANCE_LISTEN_ADDR") or ""
        if not listen.endswith(f":{grpc}"):
            problem(f"{dn}: FAIRCHANCE_LISTEN_ADDR {listen!r} is not on the grpc port {grpc}")
        # gRPC probes go to the plaintext health port when there is one (the kubelet cannot
        # speak TLS), else to the grpc port.
        health_addr = env_value(server, "FAIRCHANCE_HEALTH_ADDR")
        probe_port = grpc
        if health_addr:
            probe_port = ports.get("health")
            if probe_port is None or not health_addr.endswith(f":{probe_port}"):
                problem(f"{dn}: FAIRCHANCE_HEALTH_ADDR {health_addr!r} is not on a port named "
                        f"health")
        for probe in ("startupProbe", "readinessProbe"):
            pr = server.get(probe)
            if not pr or pr.get("grpc", {}).get("port") != probe_port:
                problem(f"{dn}: {probe} is not a gRPC probe on port {probe_port}")
        # Secrets are mounted read-only, and an env variable naming a file under a mount
        # (tokens, client token) names one that is mounted in that container.
        secret_volumes = {v["name"] for v in spec.get("volumes") or [] if "secret" in v}
        for c in containers:
            mounts = c.get("volumeMounts") or []
            for m in mounts:
                if m["name"] in secret_volumes and not m.get("readOnly"):
                    problem(f"{dn}: {c['name']}: Secret volume {m['name']} is not mounted readOnly")
            # envFrom ConfigMaps (as rendered; generated ones are unseen in the tree), then env.
            env = {}
            for ef in c.get("envFrom") or []:
                ref = (ef.get("configMapRef") or {}).get("name")
                env.update(configmap_data.get(ref, {}))
            env.update({e["name"]: e["value"] for e in c.get("env") or [] if "value" in e})
            for key in CREDENTIAL_FILE_KEYS:
                path = env.get(key)
                if path and not any(path.startswith(m["mountPath"].rstrip("/") + "/")
                                    and m["name"] in secret_volumes for m in mounts):
                    problem(f"{dn}: {c['name']}: {key} {path} is not in a mounted Secret")
            # The service refuses to start when the scheme of an upstream and the client TLS
            # settings disagree: an https:// upstream without FAIRCHANCE_CLIENT_CA, or an
            # http:// one with it.
            env.update({e["name"]: e["value"] for e in c.get("env") or [] if "value" in e})
            tls = bool(env.get("FAIRCHANCE_CLIENT_CA"))
            for key, url in sorted(env.items()):
                if not re.fullmatch(r"FAIRCHANCE_[A-Z]+_URL", key):
                    continue
                if url.startswith("https://") and not tls:
                    problem(f"{dn}: {c['name']}: {key} {url} is https:// but "
                            f"FAIRCHANCE_CLIENT_CA is not set")
                if url.startswith("http://") and tls:
                    problem(f"{dn}: {c['name']}: {key} {url} is http:// but "
                            f"FAIRCHANCE_CLIENT_CA is set: use https://")
        # Liveness must not follow the database (gRPC health does): a TCP check on the port.
        live = server.get("livenessProbe") or {}
        if live.get("tcpSocket", {}).get("port") != grpc:
            problem(f"{dn}: livenessProbe is not a TCP check on the grpc port {grpc}")
        sleep = (((server.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get(
            "seconds", 0)
        drain = duration_seconds(env_value(server, "FAIRCHANCE_DRAIN_TIMEOUT") or "25s")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace <= sleep + drain:
            problem(f"{dn}: terminationGracePeriodSeconds {grace} is not more than preStop "
                    f"{sleep}s + drain {drain:g}s")
        # Every upstream this service calls: a Service on that port, reachable through the
        # NetworkPolicies in both directions.
        for e in server.get("env") or []:
            m = re.fullmatch(r"FAIRCHANCE_([A-Z]+)_URL", e.get("name", ""))
            if not m or "value" not in e:
                continue
            url = urlparse(e["value"])
            host, port = (url.hostname or ""), url.port
            svc_name, _, rest = host.partition(".")
            if rest and not rest.startswith(f"{NAMESPACE}."):
                problem(f"{dn}: {e['name']} {e['value']} is not in namespace {NAMESPACE}")
            svc = services.get(svc_name)
            if svc is None:
                problem(f"{dn}: {e['name']}: no Service {svc_name}")
                continue
            sport = next((p for p in svc["spec"]["ports"] if p["port"] == port), None)
            if sport is None:
                problem(f"{dn}: {e['name']}: Service {svc_name} has no port {port}")
                continue
            targets = pods_of(svc["spec"]["selector"])
            for t in targets:
                tspec = t["spec"]["template"]["spec"]["containers"][0]
                tports = {p["name"]: p["containerPort"] for p in tspec.get("ports", [])}
                tp = sport["targetPort"]
                tport = tports.get(tp) if isinstance(tp, str) else tp
                tlabels = t["spec"]["template"]["metadata"]["labels"]
                if not policy_allows(policies, "Egress", labels, tlabels, tport, tports):
                    problem(f"{dn}: NetworkPolicy denies egress to {name_of(t)} port {tport} "
                            f"({e['name']})")
                if not policy_allows(policies, "Ingress", tlabels, labels, tport, tports):
                    problem(f"{where}: {name_of(t)}: NetworkPolicy denies ingress from "
                            f"{d['metadata']['name']} on port {tport} ({e['name']})")

    for name, s in services.items():
        pods = pods_of(s["spec"].get("selector") or {})
        if not pods:
            problem(f"{where}: Service/{name}: selector matches no Deployment")
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort")
            for d in pods:
                cports = {q["name"]: q["containerPort"]
                          for q in d["spec"]["template"]["spec"]["containers"][0].get("ports", [])}
                if isinstance(tp, str) and tp not in cports:
                    problem(f"{where}: Service/{name}: targetPort {tp} is not a port of {name_of(d)}")
    dep_names = {d["metadata"]["name"] for d in deployments}
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h["spec"]["scaleTargetRef"]
        if ref["kind"] != "Deployment" or ref["name"] not in dep_names:
            problem(f"{where}: {name_of(h)}: target {ref['kind']}/{ref['name']} is not defined")
        if h["spec"].get("minReplicas", 1) > h["spec"]["maxReplicas"]:
            problem(f"{where}: {name_of(h)}: minReplicas is above maxReplicas")
    for p in by_kind.get("PodDisruptionBudget", []):
        if not [d for d in deployments
                if matches(p["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]:
            problem(f"{where}: {name_of(p)}: selector matches no Deployment")
    for p in policies:
        sel = p["spec"].get("podSelector", {})
        if sel and not [d for d in deployments
                        if matches(sel, d["spec"]["template"]["metadata"]["labels"])]:
            problem(f"{where}: {name_of(p)}: podSelector matches no Deployment")
    if not deployments:
        problem(f"{where}: no Deployments found")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("tree", "rendered"):
        print(__doc__, file=sys.stderr)
        return 2
    path = pathlib.Path(argv[2])
    if argv[1] == "tree":
        objects, generated = check_tree(path)
        check_objects(objects, generated, str(path / "base"))
    else:
        check_objects(load_docs(path), set(), str(path))
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"ok: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
