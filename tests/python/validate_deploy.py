#!/usr/bin/env python3
"""Checks everything under deploy/ without a cluster or a Docker engine.

  validate_deploy.py --stackdrift PATH/TO/stackdrift [--repo DIR] [--k8s-version 1.30]

Runs in the `deploy` venv of scripts/python-env.sh (kubernetes-validate, check-jsonschema,
jsonschema, PyYAML). Checks:

* Kubernetes (deploy/kubernetes/base and every overlay): renders each kustomization (its own
  small renderer: resources, namespace, images, replicas, strategic-merge patches; when
  `kubectl` is on PATH, `kubectl kustomize` too, and both renderings must agree), validates
  every object against the Kubernetes OpenAPI schemas of --k8s-version in strict mode
  (unknown fields fail), then the references between objects: Service, PodDisruptionBudget
  and HPA targets, Secret and ConfigMap names and keys, volumes and mounts, probes on
  GET /ready at the container's port, Prometheus annotations, the role argument, the single
  compactor and detector (replicas 1, Recreate), security settings.
* The ConfigMap's stackdrift.toml and deploy/stackdrift.example.toml: TOML that parses, every
  key a real flag of the binary (from `stackdrift --help`), booleans for switches only.
  Every STACKDRIFT_* variable in the manifests and the compose file is a real one too. Then
  the binary itself must accept each config file, the compose services' environments and the
  detector Deployment's variables: `stackdrift compactor --once --dry-run` and a 5-minute
  `stackdrift detector --from/--to` replay, on empty tables in a temporary directory (the
  storage and S3 settings are replaced by that directory; nothing leaves the machine).
* deploy/compose.yaml: the Compose Specification JSON schema (the copy check-jsonschema
  vendors), then references: depends_on targets and conditions, named volumes, bind-mount
  sources, build context and Dockerfile, published ports, MinIO bucket and credentials,
  the detector's Grafana webhook against Grafana's admin login.
* Grafana provisioning: datasource YAML (the Pyroscope datasource points at the querier
  service), the dashboard provider's path against the compose mounts, the dashboard JSON
  (datasource uids exist, template variables are defined, a flame graph and a time series
  panel, an annotation query on the tag the detector sets in detector/src/notify.rs).
* deploy/Dockerfile and .dockerignore: toolchain version, non-root user, port, listen address.

Prints one line per check group and every failure; exits 1 when anything failed.
"""

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import yaml

ROLES_SINGLE = ("compactor", "detector")
PORT = 4040
ERRORS = []


def fail(where, msg):
    ERRORS.append(f"{where}: {msg}")


def ok(msg):
    print(f"ok   {msg}")


def rel(path, repo):
    try:
        return str(Path(path).resolve().relative_to(repo))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# The binary's settings


class Flags:
    """Long flags, their environment variables and roles, read from `stackdrift --help`."""

    def __init__(self, binary):
        self.binary = binary
        out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=60)
        # The help text is all that matters here, wherever it went: some builds print it to
        # stderr and exit 2 (clap's DisplayHelp handled as an error).
        text = out.stdout + out.stderr
        self.takes_value = {}  # long name -> bool
        self.env = {}  # env var -> long name
        self.roles = []
        current = None
        in_roles = False
        for line in text.splitlines():
            m = re.match(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)( <[^>]+>)?\s*$", line)
            if m:
                current = m.group(1)
                self.takes_value[current] = m.group(2) is not None
                in_roles = False
                continue
            if re.match(r"^\s+\[ROLE\]\s*$", line):
                in_roles = True
                continue
            if in_roles:
                r = re.match(r"^\s+- ([a-z]+):", line)
                if r:
                    self.roles.append(r.group(1))
            e = re.search(r"\[env: (STACKDRIFT_[A-Z0-9_]+)=?\]", line)
            if e and current:
                self.env[e.group(1)] = current
        self.env.setdefault("STACKDRIFT_ROLE", "")
        if len(self.takes_value) < 20 or not self.roles:
            sys.exit(f"FAIL could not read the flags from `{binary} --help` (exit {out.returncode}):\n{text}")

    def check_toml(self, where, text):
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            fail(where, f"not valid TOML: {e}")
            return {}
        for key, value in table.items():
            flag = key.replace("_", "-")
            if flag == "config":
                fail(where, "a config file cannot name another config file")
            elif flag not in self.takes_value:
                fail(where, f"`{key}` is not a stackdrift flag (stackdrift --help)")
            elif isinstance(value, bool) and self.takes_value[flag]:
                fail(where, f"`{key}` takes a value, not a boolean")
            elif not isinstance(value, bool) and not self.takes_value[flag]:
                fail(where, f"`{key}` is a switch: give it true or false")
            elif isinstance(value, dict) and flag not in ("storage-option", "storage-options"):
                fail(where, f"`{key}`: only storage-option takes a table")
        return table

    def check_env(self, where, name, value=None):
        if not name.startswith("STACKDRIFT_"):
            return
        flag = self.env.get(name)
        if flag is None:
            fail(where, f"{name} is not a stackdrift environment variable (stackdrift --help)")
        elif flag and value is not None and not self.takes_value.get(flag, True):
            if str(value).lower() not in ("true", "false"):
                fail(where, f"{name} is a switch: give it true or false, not {value!r}")


def binary_accepts(binary, where, config_text=None, env=None):
    """Runs the binary's two offline modes with these settings, tables in a temporary
    directory: `compactor --once --dry-run` and a detector replay of the last 5 minutes.
    Both parse every setting (clap types, durations, retention, webhook sinks) and exit 0.
    Storage, S3 and file settings from `env` are left out: the run is local."""
    with tempfile.TemporaryDirectory() as tmp:
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("STACKDRIFT_")}
        for k, v in (env or {}).items():
            if k.startswith("STACKDRIFT_") and v is not None and not k.startswith(
                    ("STACKDRIFT_S3_", "STACKDRIFT_STORAGE_")) and not k.endswith("_FILE"):
                run_env[k] = v
        run_env["STACKDRIFT_STORAGE_URL"] = os.path.join(tmp, "data")  # beats the file
        args = []
        if config_text is not None:
            path = os.path.join(tmp, "stackdrift.toml")
            with open(path, "w") as f:
                f.write(config_text)
            args = ["--config", path]
        for mode in (["compactor", "--once", "--dry-run"], ["detector", "--from", "now-5m", "--to", "now"]):
            try:
                out = subprocess.run([binary, *mode, *args], env=run_env, cwd=tmp,
                                     capture_output=True, text=True, timeout=120)
            except subprocess.TimeoutExpired:
                fail(where, f"`stackdrift {' '.join(mode)}` with these settings did not finish in 120 s")
                continue
            if out.returncode != 0:
                lines = [l for l in out.stderr.splitlines() if l.strip()] or ["(no output)"]
                why = next((l for l in lines if "error" in l.lower()), lines[-1]).strip()
                fail(where, f"`stackdrift {' '.join(mode)}` refuses these settings (exit {out.returncode}): {why}")


# ---------------------------------------------------------------------------------------------
# Kustomize

# Strategic-merge keys of the lists the patches touch (as Kubernetes defines them).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


def strategic_merge(base, patch):
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = strategic_merge(out[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(out.get(key), list):
            mk = MERGE_KEYS[key]
            merged = list(out[key])
            for item in value:
                idx = next((i for i, b in enumerate(merged) if b.get(mk) == item.get(mk)), None)
                if idx is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[idx] = strategic_merge(merged[idx], item)
            out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


KUSTOMIZATION_KEYS = {
    "apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches",
}


def render(kdir, repo):
    """Returns [(source file, object)] for the kustomization in `kdir`."""
    kfile = kdir / "kustomization.yaml"
    where = rel(kfile, repo)
    if not kfile.is_file():
        fail(where, "missing")
        return []
    (k,) = load_yaml_docs(kfile)
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        fail(where, "expected apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization")
    for key in k:
        if key not in KUSTOMIZATION_KEYS:
            fail(where, f"unexpected key `{key}` (this validator renders only {sorted(KUSTOMIZATION_KEYS)})")
    objects = []
    for res in k.get("resources", []):
        p = (kdir / res).resolve()
        if p.is_dir():
            objects += render(p, repo)
        elif p.is_file():
            for doc in load_yaml_docs(p):
                objects.append((rel(p, repo), doc))
        else:
            fail(where, f"resource {res} does not exist")
    by_id = {(o["kind"], o["metadata"]["name"]): i for i, (_, o) in enumerate(objects)}
    for patch in k.get("patches", []):
        p = kdir / patch["path"]
        if not p.is_file():
            fail(where, f"patch {patch['path']} does not exist")
            continue
        for doc in load_yaml_docs(p):
            key = (doc.get("kind"), doc.get("metadata", {}).get("name"))
            if key not in by_id:
                fail(rel(p, repo), f"patches {key[0]}/{key[1]}, which the resources do not define")
                continue
            src, obj = objects[by_id[key]]
            objects[by_id[key]] = (src, strategic_merge(obj, doc))
    for r in k.get("replicas", []):
        key = ("Deployment", r["name"])
        if key not in by_id:
            fail(where, f"replicas: no Deployment {r['name']}")
        else:
            objects[by_id[key]][1]["spec"]["replicas"] = r["count"]
    for img in k.get("images", []):
        for _, obj in objects:
            for c in pod_containers(obj):
                name, _, tag = c["image"].partition(":")
                if name == img["name"]:
                    c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}"
    if "namespace" in k:
        for _, obj in objects:
            obj["metadata"]["namespace"] = k["namespace"]
    return objects


def normalize(obj):
    """Sorts lists of named items, so that renderings that order them differently compare."""
    if isinstance(obj, dict):
        return {k: normalize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        items = [normalize(v) for v in obj]
        if items and all(isinstance(v, dict) for v in items):
            for mk in ("name", "mountPath", "containerPort"):
                if all(mk in v for v in items):
                    return sorted(items, key=lambda v: str(v[mk]))
        return items
    return obj


def compare_with_kubectl(kdir, objects, repo):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print(f"note {rel(kdir, repo)}: kubectl not on PATH, checked with this script's renderer only")
        return None
    out = subprocess.run([kubectl, "kustomize", str(kdir)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        fail(rel(kdir, repo), f"kubectl kustomize failed: {out.stderr.strip()}")
        return None
    theirs = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out.stdout) if o}
    mine = {(o["kind"], o["metadata"]["name"]): o for _, o in objects}
    if set(theirs) != set(mine):
        fail(rel(kdir, repo), f"kubectl kustomize renders {sorted(theirs)}, this script {sorted(mine)}")
        return None
    for key, obj in theirs.items():
        if normalize(obj) != normalize(mine[key]):
            fail(rel(kdir, repo), f"{key[0]}/{key[1]}: kubectl kustomize renders it otherwise:\n"
                 f"  kubectl: {json.dumps(normalize(obj), sort_keys=True)}\n"
                 f"  script:  {json.dumps(normalize(mine[key]), sort_keys=True)}")
    return [("kubectl kustomize " + rel(kdir, repo), o) for o in theirs.values()]


# ---------------------------------------------------------------------------------------------
# Kubernetes objects


def pod_spec(obj):
    if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj.get("spec", {}).get("template", {}).get("spec", {})
    return None


def pod_containers(obj):
    spec = pod_spec(obj)
    return (spec or {}).get("containers", [])


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_kubernetes(objects, flags, version, docker_uid, repo, base):
    """Schema and cross-reference checks over one rendering."""
    seen = {}
    for src, obj in objects:
        key = (obj.get("kind"), obj.get("metadata", {}).get("name"))
        if key in seen:
            fail(src, f"{key[0]}/{key[1]} defined twice")
        seen[key] = obj
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            fail(src, f"{key[0]}/{key[1]} does not validate against Kubernetes {e.version}: {path}: {e.message}")
        except Exception as e:  # noqa: BLE001 (no schema for the kind, ...)
            fail(src, f"{key[0]}/{key[1]}: {getattr(e, 'message', e)}")

    where = {(o["kind"], o["metadata"]["name"]): s for s, o in objects}

    def get(kind, name):
        return seen.get((kind, name))

    deployments = {n: o for (k, n), o in seen.items() if k == "Deployment"}
    configmaps = {n: o for (k, n), o in seen.items() if k == "ConfigMap"}
    secrets = {n: o for (k, n), o in seen.items() if k == "Secret"}

    def secret_keys(s):
        return set(s.get("data", {})) | set(s.get("stringData", {}))

    for name, s in secrets.items():
        if s.get("type") != "Opaque":
            fail(where[("Secret", name)], f"Secret/{name}: type should be Opaque")

    def pod_labels(d):
        return d["spec"]["template"]["metadata"].get("labels", {})

    # Services, PDBs: their selectors must pick pods of some Deployment, and Service ports
    # must name a port those pods have.
    for (kind, name), obj in seen.items():
        src = where[(kind, name)]
        if kind == "Service":
            sel = obj["spec"].get("selector", {})
            targets = [d for d in deployments.values() if selects(sel, pod_labels(d))]
            if not targets:
                fail(src, f"Service/{name}: selector {sel} matches no Deployment's pods")
            for port in obj["spec"].get("ports", []):
                tp = port.get("targetPort", port["port"])
                for d in targets:
                    cports = [p for c in pod_containers(d) for p in c.get("ports", [])]
                    if not any(p.get("name") == tp or p.get("containerPort") == tp for p in cports):
                        fail(src, f"Service/{name}: targetPort {tp} is no port of Deployment/{d['metadata']['name']}")
                if port.get("port") != PORT:
                    fail(src, f"Service/{name}: port {port.get('port')}, expected {PORT}")
        elif kind == "PodDisruptionBudget":
            sel = obj["spec"].get("selector", {}).get("matchLabels", {})
            if not any(selects(sel, pod_labels(d)) for d in deployments.values()):
                fail(src, f"PodDisruptionBudget/{name}: selector {sel} matches no Deployment's pods")
        elif kind == "HorizontalPodAutoscaler":
            ref = obj["spec"]["scaleTargetRef"]
            d = get(ref.get("kind"), ref.get("name"))
            if d is None or ref.get("apiVersion") != "apps/v1":
                fail(src, f"HorizontalPodAutoscaler/{name}: target {ref} does not exist")
                continue
            if obj["apiVersion"] != "autoscaling/v2":
                fail(src, f"HorizontalPodAutoscaler/{name}: use autoscaling/v2")
            role = pod_labels(d).get("app.kubernetes.io/component")
            if role in ROLES_SINGLE:
                fail(src, f"HorizontalPodAutoscaler/{name} scales the {role}, which must stay single")
            for m in obj["spec"].get("metrics", []):
                res = m.get("resource", {}).get("name")
                for c in pod_containers(d):
                    if res and res not in c.get("resources", {}).get("requests", {}):
                        fail(src, f"HorizontalPodAutoscaler/{name}: utilization of {res} needs a "
                             f"{res} request on container {c['name']} of Deployment/{ref['name']}")
            if obj["spec"].get("minReplicas", 1) > obj["spec"]["maxReplicas"]:
                fail(src, f"HorizontalPodAutoscaler/{name}: minReplicas > maxReplicas")

    hpa_targets = {o["spec"]["scaleTargetRef"]["name"] for (k, _), o in seen.items()
                   if k == "HorizontalPodAutoscaler"}
    roles_seen = set()
    for name, d in deployments.items():
        src = where[("Deployment", name)]
        spec = d["spec"]
        tmpl = spec["template"]
        labels = pod_labels(d)
        if not selects(spec["selector"].get("matchLabels", {}), labels):
            fail(src, f"Deployment/{name}: selector does not match its pod labels")
        role = labels.get("app.kubernetes.io/component")
        roles_seen.add(role)
        if role in ROLES_SINGLE:
            if spec.get("replicas") != 1:
                fail(src, f"Deployment/{name}: the {role} must run as one replica, not {spec.get('replicas')}")
            if spec.get("strategy", {}).get("type") != "Recreate":
                fail(src, f"Deployment/{name}: the {role} needs strategy Recreate (a rolling update runs two)")
        elif role == "ingester" and name not in hpa_targets:
            fail(src, f"Deployment/{name}: the ingester has no HorizontalPodAutoscaler")
        ann = tmpl["metadata"].get("annotations", {})
        pod = tmpl["spec"]
        if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics":
            fail(src, f"Deployment/{name}: pod template needs prometheus.io/scrape \"true\" and prometheus.io/path /metrics")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounted = set()
        for v in volumes.values():
            if "configMap" in v:
                cm = configmaps.get(v["configMap"]["name"])
                if cm is None:
                    fail(src, f"Deployment/{name}: volume {v['name']} names missing ConfigMap/{v['configMap']['name']}")
                for it in v["configMap"].get("items", []):
                    if cm is not None and it["key"] not in cm.get("data", {}):
                        fail(src, f"Deployment/{name}: volume {v['name']}: ConfigMap has no key {it['key']}")
            if "secret" in v:
                sec = secrets.get(v["secret"]["secretName"])
                if sec is None:
                    if not v["secret"].get("optional"):
                        fail(src, f"Deployment/{name}: volume {v['name']} names missing Secret/{v['secret']['secretName']}")
                else:
                    for it in v["secret"].get("items", []):
                        if it["key"] not in secret_keys(sec):
                            fail(src, f"Deployment/{name}: volume {v['name']}: Secret has no key {it['key']}")
        sc_pod = pod.get("securityContext", {})
        if sc_pod.get("runAsUser") is not None and docker_uid is not None and sc_pod["runAsUser"] != docker_uid:
            fail(src, f"Deployment/{name}: runAsUser {sc_pod['runAsUser']}, the image's user is {docker_uid}")
        for c in pod["containers"]:
            cw = f"Deployment/{name} container {c['name']}"
            if base and not c["image"].startswith("stackdrift:"):
                fail(src, f"{cw}: image {c['image']}, expected stackdrift:<tag>")
            if c.get("imagePullPolicy") != "IfNotPresent":
                fail(src, f"{cw}: imagePullPolicy should be IfNotPresent")
            args = c.get("args", [])
            if not args or args[0] not in flags.roles:
                fail(src, f"{cw}: first argument should be the role ({flags.roles}), got {args[:1]}")
            elif args[0] != role:
                fail(src, f"{cw}: runs `{args[0]}` but is labelled component {role}")
            for a in args[1:]:
                if a.startswith("--") and a[2:].split("=")[0] not in flags.takes_value:
                    fail(src, f"{cw}: {a} is not a stackdrift flag")
            mounts = c.get("volumeMounts", [])
            for m in mounts:
                if m["name"] not in volumes:
                    fail(src, f"{cw}: mounts undefined volume {m['name']}")
                mounted.add(m["name"])
            if "--config" in args:
                path = args[args.index("--config") + 1]
                m = next((m for m in mounts if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
                vol = volumes.get(m["name"]) if m else None
                key = path[len(m["mountPath"].rstrip("/")) + 1:] if m else None
                cm = configmaps.get(vol["configMap"]["name"]) if vol and "configMap" in vol else None
                if cm is None or key not in cm.get("data", {}):
                    fail(src, f"{cw}: --config {path} is not a key of a mounted ConfigMap")
            for e in c.get("env", []):
                flags.check_env(f"{src} {cw}", e["name"], e.get("value"))
                ref = e.get("valueFrom", {})
                for kind, store, keys in (("secretKeyRef", secrets, secret_keys),
                                          ("configMapKeyRef", configmaps, lambda o: set(o.get("data", {})))):
                    if kind in ref:
                        r = ref[kind]
                        obj = store.get(r["name"])
                        if obj is None:
                            fail(src, f"{cw}: env {e['name']} names missing {kind[:-6]}/{r['name']}")
                        elif r["key"] not in keys(obj) and not r.get("optional"):
                            fail(src, f"{cw}: env {e['name']}: {r['name']} has no key {r['key']}")
            for ef in c.get("envFrom", []):
                for kind, store in (("secretRef", secrets), ("configMapRef", configmaps)):
                    if kind in ef and ef[kind]["name"] not in store and not ef[kind].get("optional"):
                        fail(src, f"{cw}: envFrom names missing {ef[kind]['name']}")
            ports = c.get("ports", [])
            if not any(p.get("containerPort") == PORT for p in ports):
                fail(src, f"{cw}: no containerPort {PORT} (the image listens there)")
            if ann.get("prometheus.io/port") != str(PORT):
                fail(src, f"Deployment/{name}: prometheus.io/port should be \"{PORT}\"")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                p = c.get(probe)
                if p is None:
                    if probe != "startupProbe":
                        fail(src, f"{cw}: no {probe}")
                    continue
                get_ = p.get("httpGet")
                if not get_ or get_.get("path") != "/ready":
                    fail(src, f"{cw}: {probe} should be GET /ready")
                    continue
                port = get_.get("port")
                if not any(p_.get("name") == port or p_.get("containerPort") == port for p_ in ports):
                    fail(src, f"{cw}: {probe} port {port} is no port of the container")
                elif not any(p_.get("containerPort") == PORT and port in (PORT, p_.get("name")) for p_ in ports):
                    fail(src, f"{cw}: {probe} port {port} is not the server's port {PORT}")
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot") or sc_pod.get("runAsNonRoot")):
                fail(src, f"{cw}: runAsNonRoot is not set")
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(src, f"{cw}: readOnlyRootFilesystem should be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(src, f"{cw}: allowPrivilegeEscalation should be false")
            res = c.get("resources", {})
            if "memory" not in res.get("requests", {}) or "memory" not in res.get("limits", {}):
                fail(src, f"{cw}: needs memory requests and limits")
        for v in volumes:
            if v not in mounted:
                fail(src, f"Deployment/{name}: volume {v} is mounted by no container")
    for role in ("ingester", "querier", "compactor", "detector"):
        if role not in roles_seen:
            fail("kubernetes", f"no Deployment runs the {role}")
    for (kind, name), obj in seen.items():
        if kind == "ConfigMap":
            for key, text in obj.get("data", {}).items():
                if key.endswith(".toml"):
                    w = f"{where[(kind, name)]} ConfigMap/{name} {key}"
                    n = len(ERRORS)
                    flags.check_toml(w, text)
                    if len(ERRORS) == n:
                        binary_accepts(flags.binary, w, config_text=text)
    # The detector's own variables (webhooks, ...) with the shared config file.
    for name, d in deployments.items():
        if pod_labels(d).get("app.kubernetes.io/component") != "detector":
            continue
        for c in pod_containers(d):
            args = c.get("args", [])
            text = None
            if "--config" in args:
                path = args[args.index("--config") + 1]
                text = next((t for cm in configmaps.values() for k, t in cm.get("data", {}).items()
                             if path.endswith("/" + k)), None)
            env = {e["name"]: e.get("value") for e in c.get("env", []) if "value" in e}
            if env:
                binary_accepts(flags.binary, f"{where[('Deployment', name)]} Deployment/{name} env", text, env)
    return seen


# ---------------------------------------------------------------------------------------------
# Compose


def interpolate(value, env):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} and $$ in one string."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        v = env.get(name)
        if v is None or (op == ":-" and v == ""):
            return default if op else ""
        return v
    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}", sub, value)


def interpolate_all(obj, env):
    if isinstance(obj, dict):
        return {k: interpolate_all(v, env) for k, v in obj.items()}
    if isinstance(obj, list):
        return [interpolate_all(v, env) for v in obj]
    if isinstance(obj, str):
        return interpolate(obj, env)
    return obj


def compose_schema():
    import importlib.resources
    p = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(p.read_text())


def env_map(svc):
    env = svc.get("environment", {})
    if isinstance(env, list):
        return dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def parse_port(spec):
    """"[IP:]HOST:CONTAINER[/proto]" -> (ip, host, container)."""
    m = re.fullmatch(r"(?:(\d+\.\d+\.\d+\.\d+):)?(?:(\d+):)?(\d+)(?:/(tcp|udp))?", str(spec))
    if not m:
        return None
    return m.group(1), m.group(2) and int(m.group(2)), int(m.group(3))


def check_compose(path, flags, repo):
    src = rel(path, repo)
    n0 = len(ERRORS)
    with open(path) as f:
        raw = yaml.safe_load(f)
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.path))
    for e in errors:
        fail(src, f"Compose specification: {'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}")
    # Everything below sees the file as Compose would with no variables set: the defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "GRAFANA_"))}
    c = interpolate_all(raw, env)
    services = c.get("services", {})
    volumes = set((c.get("volumes") or {}).keys())
    networks = set((c.get("networks") or {}).keys()) | {"default"}
    base = path.parent
    published = {}
    for name, svc in services.items():
        sw = f"{src} service {name}"
        if "image" not in svc and "build" not in svc:
            fail(sw, "needs image or build")
        if "build" in svc:
            b = svc["build"]
            ctx = (base / (b if isinstance(b, str) else b.get("context", "."))).resolve()
            if not ctx.is_dir():
                fail(sw, f"build context {ctx} does not exist")
            df = ctx / (b.get("dockerfile", "Dockerfile") if isinstance(b, dict) else "Dockerfile")
            if not df.is_file():
                fail(sw, f"Dockerfile {df} does not exist")
            if svc.get("pull_policy") != "build":
                fail(sw, "a locally built image should have pull_policy: build (never pulled)")
        deps = svc.get("depends_on", {})
        deps = {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        for dep, spec in deps.items():
            if dep not in services:
                fail(sw, f"depends_on {dep}, which is no service")
                continue
            cond = spec.get("condition", "service_started")
            if cond == "service_healthy" and "healthcheck" not in services[dep]:
                fail(sw, f"waits for {dep} to be healthy, but {dep} has no healthcheck")
            if cond == "service_completed_successfully" and services[dep].get("restart", "no") != "no":
                fail(sw, f"waits for {dep} to complete, but {dep} restarts")
        for v in svc.get("volumes", []):
            spec = v if isinstance(v, str) else f"{v.get('source', '')}:{v.get('target', '')}"
            source = spec.split(":")[0]
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    fail(sw, f"bind-mount source {source} does not exist")
            elif source and source not in volumes:
                fail(sw, f"volume {source} is not declared under top-level volumes")
        for n in svc.get("networks", []):
            if n not in networks:
                fail(sw, f"network {n} is not declared")
        for p in svc.get("ports", []):
            parsed = parse_port(p)
            if parsed is None:
                fail(sw, f"port {p!r} is not [IP:]HOST:CONTAINER")
                continue
            ip, host, container = parsed
            if host is not None:
                if (ip, host) in published:
                    fail(sw, f"host port {host} is also published by {published[(ip, host)]}")
                published[(ip, host)] = name
            if ip != "127.0.0.1":
                fail(sw, f"port {p!r} should be bound to 127.0.0.1 (a local demo)")
        for k, v in env_map(svc).items():
            flags.check_env(sw, k, v)
        cmd = svc.get("command")
        if isinstance(svc.get("image"), str) and svc["image"].startswith("stackdrift"):
            if not cmd or cmd[0] not in flags.roles:
                fail(sw, f"command should start with a role ({flags.roles})")
            if cmd and cmd[0] != name:
                fail(sw, f"service {name} runs role {cmd[0]}")
            for a in (cmd or [])[1:]:
                if a.startswith("--") and a[2:].split("=")[0] not in flags.takes_value:
                    fail(sw, f"{a} is not a stackdrift flag")
            hc = " ".join(svc.get("healthcheck", {}).get("test", []))
            if f"/dev/tcp/127.0.0.1/{PORT}" not in hc or "GET /ready" not in hc:
                fail(sw, f"healthcheck should GET /ready on port {PORT}")
            if name in ROLES_SINGLE and (svc.get("scale", 1) != 1 or svc.get("deploy", {}).get("replicas", 1) != 1):
                fail(sw, f"the {name} must be single")
    for role in ("ingester", "querier", "compactor", "detector"):
        if role not in services:
            fail(src, f"no {role} service")
    if len(ERRORS) == n0:
        envs = {json.dumps(env_map(services[r]), sort_keys=True): r
                for r in ("ingester", "querier", "compactor", "detector")}
        for e, r in envs.items():
            binary_accepts(flags.binary, f"{src} service {r} environment", env=json.loads(e))
    for svc in ("minio", "createbucket", "grafana"):
        if svc not in services:
            fail(src, f"no {svc} service")
    if len(ERRORS) > n0:
        return c

    # Storage: the bucket createbucket makes, MinIO's credentials and address.
    minio_env = env_map(services["minio"])
    mb = " ".join(services["createbucket"].get("command", []))
    made = re.search(r"mc mb (?:--ignore-existing )?\w+/([a-z0-9.-]+)", mb)
    alias = re.search(r"mc alias set \w+ (\S+) \"?(\S+?)\"? \"?(\S+?)\"?(?:\s|$)", mb)
    if not made or not alias:
        fail(src, "createbucket should run `mc alias set` then `mc mb` on the bucket")
    for role in ("ingester", "querier", "compactor", "detector"):
        e = env_map(services[role])
        sw = f"{src} service {role}"
        url = urlsplit(e.get("STACKDRIFT_STORAGE_URL", ""))
        if url.scheme != "s3" or (made and url.netloc != made.group(1)):
            fail(sw, f"STACKDRIFT_STORAGE_URL {e.get('STACKDRIFT_STORAGE_URL')} is not in the bucket createbucket makes")
        ep = urlsplit(e.get("STACKDRIFT_S3_ENDPOINT", ""))
        if ep.hostname != "minio" or ep.port != 9000:
            fail(sw, "STACKDRIFT_S3_ENDPOINT should be http://minio:9000")
        if (e.get("STACKDRIFT_S3_ACCESS_KEY_ID"), e.get("STACKDRIFT_S3_SECRET_ACCESS_KEY")) != (
                minio_env.get("MINIO_ROOT_USER"), minio_env.get("MINIO_ROOT_PASSWORD")):
            fail(sw, "S3 credentials differ from MinIO's root user")
        if ep.scheme == "http" and e.get("STACKDRIFT_S3_ALLOW_HTTP") != "true":
            fail(sw, "plain-HTTP endpoint needs STACKDRIFT_S3_ALLOW_HTTP=true")
    if len(minio_env.get("MINIO_ROOT_PASSWORD") or "") < 8:
        fail(f"{src} service minio", "MinIO refuses root passwords shorter than 8 characters")

    # The detector's Grafana webhook: Grafana's service, port and admin login.
    d_env = env_map(services["detector"])
    sinks = (d_env.get("STACKDRIFT_WEBHOOKS") or "").split()
    g = [s[len("grafana="):] for s in sinks if s.startswith("grafana=")]
    gsvc = services["grafana"]
    genv = env_map(gsvc)
    if not g:
        fail(f"{src} service detector", "no grafana= webhook in STACKDRIFT_WEBHOOKS")
    for u in g:
        p = urlsplit(u)
        if p.hostname != "grafana" or (p.port or 80) != 3000:
            fail(f"{src} service detector", f"grafana webhook {p.hostname}:{p.port} is not the grafana service's port 3000")
        token = d_env.get("STACKDRIFT_GRAFANA_TOKEN")
        if not token and (p.username, p.password) != (
                genv.get("GF_SECURITY_ADMIN_USER", "admin"), genv.get("GF_SECURITY_ADMIN_PASSWORD")):
            fail(f"{src} service detector", "grafana webhook credentials are not Grafana's admin login")
    if "grafana" not in (services["detector"].get("depends_on") or {}):
        fail(f"{src} service detector", "should depend on grafana")
    # Diff links point at the querier as published.
    q_host = [h for (ip, h), s in published.items() if s == "querier"]
    pub = urlsplit(env_map(services["querier"]).get("STACKDRIFT_PUBLIC_URL", ""))
    if not q_host or pub.port not in q_host:
        fail(f"{src} service querier", f"STACKDRIFT_PUBLIC_URL {pub.geturl()} is not the querier's published port {q_host}")
    return c


# ---------------------------------------------------------------------------------------------
# Grafana


def container_path(svc, target, base):
    """The host path a container path comes from, through the service's bind mounts."""
    best = None
    for v in svc.get("volumes", []):
        if not isinstance(v, str):
            continue
        parts = v.split(":")
        if len(parts) < 2 or not parts[0].startswith((".", "/")):
            continue
        src, dst = parts[0], parts[1].rstrip("/")
        if target == dst or target.startswith(dst + "/"):
            if best is None or len(dst) > len(best[1]):
                best = (src, dst)
    if best is None:
        return None
    return (base / best[0] / target[len(best[1]):].lstrip("/")).resolve()


def walk(obj, path=""):
    if isinstance(obj, dict):
        yield path, obj
        for k, v in obj.items():
            yield from walk(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk(v, f"{path}[{i}]")


def check_grafana(compose, compose_path, repo):
    base = compose_path.parent
    services = compose["services"]
    gsvc = services["grafana"]
    prov = container_path(gsvc, "/etc/grafana/provisioning", base)
    if prov is None or not prov.is_dir():
        fail("grafana", "compose does not mount a provisioning directory at /etc/grafana/provisioning")
        return
    # Datasources.
    uids = {"-- Grafana --", "grafana"}
    pyroscope = []
    for f in sorted((prov / "datasources").glob("*.y*ml")):
        doc = yaml.safe_load(f.read_text())
        if doc.get("apiVersion") != 1:
            fail(rel(f, repo), "apiVersion should be 1")
        for ds in doc.get("datasources", []):
            for key in ("name", "type", "uid", "url"):
                if key not in ds:
                    fail(rel(f, repo), f"datasource {ds.get('name')}: no {key}")
            if ds.get("uid") in uids:
                fail(rel(f, repo), f"datasource uid {ds.get('uid')} is not unique")
            uids.add(ds.get("uid"))
            if ds.get("type") == "grafana-pyroscope-datasource":
                pyroscope.append(ds)
                u = urlsplit(ds.get("url", ""))
                q = services.get(u.hostname or "")
                if u.hostname != "querier" or q is None or "querier" not in (q.get("command") or [""])[0]:
                    fail(rel(f, repo), f"Pyroscope datasource url {ds.get('url')} is not the querier service")
                if u.port != PORT:
                    fail(rel(f, repo), f"Pyroscope datasource url port {u.port}, the querier listens on {PORT}")
    if not pyroscope:
        fail("grafana", "no grafana-pyroscope-datasource is provisioned")
    # Dashboard providers and their files.
    dashboards = []
    for f in sorted((prov / "dashboards").glob("*.y*ml")):
        doc = yaml.safe_load(f.read_text())
        for p in doc.get("providers", []):
            path = p.get("options", {}).get("path")
            host = container_path(gsvc, path or "", base)
            if p.get("type") != "file" or host is None or not host.is_dir():
                fail(rel(f, repo), f"provider {p.get('name')}: path {path} is not a directory mounted into grafana")
                continue
            dashboards += sorted(host.glob("*.json"))
    if not dashboards:
        fail("grafana", "no dashboard JSON is provisioned")
    home = env_map(gsvc).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        h = container_path(gsvc, home, base)
        if h is None or not h.is_file():
            fail("grafana", f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home} is no mounted file")
    notify = (repo / "detector/src/notify.rs").read_text()
    m = re.search(r'"tags":\s*\[\s*"([^"]+)"', notify)
    detector_tag = m.group(1) if m else None
    if detector_tag is None:
        fail("detector/src/notify.rs", "could not find the tags of the Grafana payload")
    for f in dashboards:
        fw = rel(f, repo)
        try:
            dash = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            fail(fw, f"not JSON: {e}")
            continue
        if not dash.get("uid") or not dash.get("title"):
            fail(fw, "needs a uid and a title")
        variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
        for path, node in walk(dash):
            ds = node.get("datasource")
            if isinstance(ds, dict) and ds.get("uid") not in uids:
                fail(fw, f"{path}: datasource uid {ds.get('uid')} is not provisioned ({sorted(uids)})")
            for k, v in node.items():
                for i, text in enumerate(v if isinstance(v, list) else [v]):
                    if not isinstance(text, str):
                        continue
                    for var in re.findall(r"\$\{?([A-Za-z_]\w*)", text):
                        if var not in variables and not var.startswith("__"):
                            at = f"{path}.{k}" + (f"[{i}]" if isinstance(v, list) else "")
                            fail(fw, f"{at}: ${var} is no template variable")
        ids = [p.get("id") for p in dash.get("panels", [])]
        if len(ids) != len(set(ids)):
            fail(fw, "panel ids are not unique")
        kinds = {(p.get("type"), t.get("queryType")) for p in dash.get("panels", []) for t in p.get("targets", [])}
        if ("flamegraph", "profile") not in kinds or ("timeseries", "metrics") not in kinds:
            fail(fw, f"needs a flamegraph panel (queryType profile) and a timeseries panel (queryType metrics), has {sorted(kinds)}")
        ann = [a for a in dash.get("annotations", {}).get("list", [])
               if a.get("target", {}).get("type") == "tags"]
        if detector_tag and not any(detector_tag in a["target"].get("tags", []) for a in ann):
            fail(fw, f"no annotation query on the tag {detector_tag!r} the detector sets")


# ---------------------------------------------------------------------------------------------
# Dockerfile


def check_docker(repo):
    df = repo / "deploy/Dockerfile"
    text = df.read_text()
    src = rel(df, repo)
    cargo = tomllib.loads((repo / "Cargo.toml").read_text())
    want = cargo["workspace"]["package"]["rust-version"]
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    m = re.match(r"rust:(\d+\.\d+)", froms[0]) if froms else None
    if not m or tuple(map(int, m.group(1).split("."))) < tuple(map(int, want.split("."))):
        fail(src, f"builder image {froms[:1]} is older than the workspace's rust-version {want}")
    if len(froms) < 2 or not froms[-1].startswith("debian:"):
        fail(src, "runtime stage should be a Debian slim image")
    if not re.search(rf"^EXPOSE\s+{PORT}\b", text, re.M):
        fail(src, f"no EXPOSE {PORT}")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    uid = None
    if not users or users[-1].split(":")[0] in ("root", "0"):
        fail(src, "the runtime stage runs as root")
    elif users[-1].split(":")[0].isdigit():
        uid = int(users[-1].split(":")[0])
    if f"STACKDRIFT_LISTEN=0.0.0.0:{PORT}" not in text and f"0.0.0.0:{PORT}" not in text:
        fail(src, f"the container must listen on 0.0.0.0:{PORT}")
    di = repo / ".dockerignore"
    if not di.is_file() or not any(l.strip().rstrip("/") in ("target", "/target") for l in di.read_text().splitlines()):
        fail(".dockerignore", "should exclude target/")
    return uid


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stackdrift", required=True, help="the stackdrift binary (for --help)")
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[2]))
    ap.add_argument("--k8s-version", default="1.30")
    a = ap.parse_args()
    repo = Path(a.repo).resolve()
    deploy = repo / "deploy"
    flags = Flags(a.stackdrift)
    ok(f"stackdrift --help: {len(flags.takes_value)} flags, {len(flags.env)} environment variables, roles {flags.roles}")

    n = len(ERRORS)
    uid = check_docker(repo)
    ok_or = lambda what, n0: ok(what) if len(ERRORS) == n0 else print(f"FAIL {what}")  # noqa: E731
    ok_or("deploy/Dockerfile, .dockerignore", n)

    n = len(ERRORS)
    example = (deploy / "stackdrift.example.toml").read_text()
    flags.check_toml("deploy/stackdrift.example.toml", example)
    if len(ERRORS) == n:
        binary_accepts(flags.binary, "deploy/stackdrift.example.toml", config_text=example)
    ok_or("deploy/stackdrift.example.toml: keys are stackdrift flags, the binary accepts it", n)

    kdirs = [deploy / "kubernetes/base"] + sorted(p for p in (deploy / "kubernetes/overlays").glob("*") if p.is_dir())
    for kdir in kdirs:
        n = len(ERRORS)
        objects = render(kdir, repo)
        if not ERRORS[n:]:
            is_base = kdir.name == "base"
            check_kubernetes(objects, flags, a.k8s_version, uid, repo, is_base)
            theirs = compare_with_kubectl(kdir, objects, repo)
            if theirs and not ERRORS[n:]:
                check_kubernetes(theirs, flags, a.k8s_version, uid, repo, is_base)
        kinds = sorted({o['kind'] for _, o in objects})
        ok_or(f"{rel(kdir, repo)}: {len(objects)} objects ({', '.join(kinds)}), Kubernetes {a.k8s_version} strict schemas and references", n)

    n = len(ERRORS)
    compose_path = deploy / "compose.yaml"
    compose = check_compose(compose_path, flags, repo)
    ok_or("deploy/compose.yaml: Compose specification schema and references", n)

    if compose and "grafana" in compose.get("services", {}):
        n = len(ERRORS)
        check_grafana(compose, compose_path, repo)
        ok_or("deploy/grafana: datasource, dashboard provider, dashboard", n)

    if ERRORS:
        # A base's problem shows once, not once per rendering that contains it.
        unique = list(dict.fromkeys(ERRORS))
        print(f"\n{len(unique)} problem(s) in deploy/:", file=sys.stderr)
        for e in unique:
            print(f"  {e}", file=sys.stderr)
        sys.exit(1)
    print("deploy/: all checks passed")


if __name__ == "__main__":
    main()
