"""deploy/kubernetes/ is valid Kubernetes, and its parts agree with each other and with the daemon.

Schemas: every core object is checked by `kubernetes-validate` (the Kubernetes OpenAPI schemas as JSON Schema,
shipped in the PyPI package, so offline) in strict mode, which rejects unknown fields; the PodMonitor by the
prometheus-operator CRD's models (`cloudcoil-models-prometheus-operator`), with no field left unread. Both are in
the `test` extras. The Prometheus job is checked by `promtool check config` (Debian's `prometheus` package; .ci/run
installs it). Debian builds Prometheus without Kubernetes service discovery, so where promtool does not know
`kubernetes_sd_configs` it checks the job with that one block swapped for a static target, and the block itself is
checked here against the pods it must find (`discovered_targets`, Prometheus's relabelling rules replayed).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from dbtest import run_dupewatch

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
RULES = KUBERNETES.parent / "prometheus" / "dupewatch.rules.yml"
# The oldest Kubernetes the manifests claim (deploy/README.md: persistentVolumeClaimRetentionPolicy is on by default
# from 1.27) and the newest the validator ships.
KUBERNETES_VERSIONS = ["1.27", kubernetes_validate.utils.latest_version()]
MEMORY_TARGET_BYTES = 150 * 10**6  # issue 20: one daemon stays under 150 MB
PLACEHOLDER_PASSWORDS = {"change-me"}


def manifests() -> dict[str, list[dict[str, Any]]]:
    """File name -> the Kubernetes objects in it, for every YAML manifest in deploy/kubernetes/."""
    found = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found[path.name] = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return found


def objects() -> list[dict[str, Any]]:
    return [doc for docs in manifests().values() for doc in docs]


def the(kind: str) -> dict[str, Any]:
    [found] = [doc for doc in objects() if doc["kind"] == kind]
    return found


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text(encoding="utf-8"))
    return loaded


def container() -> dict[str, Any]:
    [only] = the("StatefulSet")["spec"]["template"]["spec"]["containers"]
    return only


def env() -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container()["env"]}


def pod_labels() -> dict[str, str]:
    labels: dict[str, str] = the("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    return labels


def daemon_config_text() -> str:
    [(key, text)] = the("ConfigMap")["data"].items()
    assert key == "dupewatch.toml"
    return str(text)


def daemon_config() -> dict[str, Any]:
    return tomllib.loads(daemon_config_text())


def secret_values() -> dict[str, str]:
    values: dict[str, str] = the("Secret")["stringData"]
    return values


def scrape_job() -> dict[str, Any]:
    [job] = yaml.safe_load((KUBERNETES / "prometheus-scrape.yml").read_text(encoding="utf-8"))["scrape_configs"]
    return dict(job)


# -- schemas -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_core_object_is_valid_against_the_kubernetes_schema(version: str) -> None:
    core = [doc for doc in objects() if doc["kind"] != "PodMonitor"]
    assert {doc["kind"] for doc in core} == {"ConfigMap", "Secret", "Service", "StatefulSet"}
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    """Strict mode is what catches the usual mistake (a field in the wrong place is silently ignored by a lax one)."""
    statefulset = copy.deepcopy(the("StatefulSet"))
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"port": "metrics"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[-1], strict=True)


def podmonitor_as_read(doc: dict[str, Any]) -> dict[str, Any]:
    """The PodMonitor as the Operator's CRD reads it: validated by its models, dumped back. A field the CRD does not
    have is dropped on the way, so the dump differs from `doc`."""
    from cloudcoil.models.prometheus_operator.v1 import PodMonitor

    read: dict[str, Any] = PodMonitor.model_validate(doc).model_dump(by_alias=True, exclude_none=True, mode="json")
    return read


def test_the_podmonitor_is_valid_against_the_operator_crd() -> None:
    podmonitor = the("PodMonitor")
    assert podmonitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert podmonitor_as_read(podmonitor) == podmonitor


def test_the_podmonitor_check_rejects_a_misspelt_field_and_a_bad_interval() -> None:
    from pydantic import ValidationError

    misspelt = copy.deepcopy(the("PodMonitor"))
    misspelt["spec"]["podMetricsEndpoints"][0]["relabelling"] = []
    assert podmonitor_as_read(misspelt) != misspelt
    bad_interval = copy.deepcopy(the("PodMonitor"))
    bad_interval["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(ValidationError):
        podmonitor_as_read(bad_interval)


def test_the_kustomization_deploys_every_manifest_but_the_optional_podmonitor() -> None:
    listed = kustomization()["resources"]
    assert sorted(listed) == sorted(name for name in manifests() if name != "podmonitor.yaml")
    namespaces = {doc["metadata"]["namespace"] for doc in objects()}
    assert namespaces == {"dupewatch"}


def test_the_kustomization_sets_the_image_the_statefulset_runs() -> None:
    [image] = kustomization()["images"]
    assert container()["image"].rpartition(":")[0] == image["name"]


def test_kubectl_kustomize_renders_the_same_objects() -> None:
    """The rendering `kubectl apply -k` applies: kustomize's own, when kubectl is installed (it is not in Debian)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run([kubectl, "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    docs = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    expected = [doc for name in kustomization()["resources"] for doc in manifests()[name]]
    key = lambda doc: (doc["kind"], doc["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, docs)) == sorted(map(key, expected))
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)


# -- shards ---------------------------------------------------------------------------------------------------------

def test_one_shard_per_replica() -> None:
    """The daemon takes N from DUPEWATCH_SHARDS and its shard from POD_NAME's ordinal: with N != replicas, targets
    would go unchecked (N > replicas) or two pods would run the same shard (N < replicas)."""
    statefulset = the("StatefulSet")
    assert env()["DUPEWATCH_SHARDS"]["value"] == str(statefulset["spec"]["replicas"])
    assert env()["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "DUPEWATCH_SHARD" not in env()  # a fixed I/N would make every pod the same shard
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"


def test_the_daemon_reads_the_mounted_config() -> None:
    args = container()["args"]
    assert container()["command"] == ["dupewatch"] and args[0] == "daemon"
    config_path = Path(args[args.index("--config") + 1])
    mount = mounts()[str(config_path.parent)]
    assert mount["readOnly"] is True
    assert volumes()[mount["name"]]["configMap"] == {"name": the("ConfigMap")["metadata"]["name"]}
    assert config_path.name in the("ConfigMap")["data"]


def test_the_urls_the_config_names_come_from_the_secret() -> None:
    [source] = container()["envFrom"]
    assert source == {"secretRef": {"name": the("Secret")["metadata"]["name"]}}
    named = {place["url_env"] for section in ("sources", "databases")
             for place in daemon_config().get(section, {}).values()}
    assert named and named <= set(secret_values())
    assert "://" not in daemon_config_text()  # no URL, so no password, in the ConfigMap


def test_the_secret_holds_placeholders_only() -> None:
    for name, value in secret_values().items():
        url = urlsplit(value)
        assert url.password in PLACEHOLDER_PASSWORDS, f"{name}: the password is not a placeholder"
        assert url.hostname is not None and url.hostname.endswith((".invalid", ".example")), name


def test_the_fleet_config_passes_config_validate(tmp_path: Path) -> None:
    path = tmp_path / "dupewatch.toml"
    path.write_text(daemon_config_text(), encoding="utf-8")
    run = run_dupewatch("config", "validate", "--offline", "--config", path, env=secret_values())
    assert run.code == 0, run.output


def test_the_config_outside_fleet_mode_passes_config_validate_today(tmp_path: Path) -> None:
    """What does not depend on fleet mode ([metrics], [state], the check's own fields) is valid in this build: the
    same file with the source read as one database."""
    text = daemon_config_text().replace("[sources.tenants]", "[databases.tenants]")
    text = re.sub(r'^(discover|include|exclude|labels|every) = .*$', "", text, flags=re.MULTILINE)
    text = text.replace('source = "tenants"', 'database = "tenants"')
    path = tmp_path / "dupewatch.toml"
    path.write_text(text, encoding="utf-8")
    run = run_dupewatch("config", "validate", "--offline", "--config", path, env=secret_values())
    assert run.code == 0, run.output


# -- the pod --------------------------------------------------------------------------------------------------------

def mounts() -> dict[str, dict[str, Any]]:
    return {mount["mountPath"]: mount for mount in container()["volumeMounts"]}


def volumes() -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in the("StatefulSet")["spec"]["template"]["spec"]["volumes"]}


def test_the_pod_runs_unprivileged_on_a_read_only_root_filesystem() -> None:
    pod = the("StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    own = container()["securityContext"]
    assert own["readOnlyRootFilesystem"] is True and own["allowPrivilegeEscalation"] is False
    assert own["capabilities"] == {"drop": ["ALL"]}


def test_every_mount_names_a_volume_of_the_pod() -> None:
    """A cross-reference the schema cannot see: a mount of a missing volume is refused only when the pod is created."""
    claims = {t["metadata"]["name"] for t in the("StatefulSet")["spec"]["volumeClaimTemplates"]}
    assert {mount["name"] for mount in mounts().values()} == set(volumes()) | claims
    assert not set(volumes()) & claims


def test_every_directory_the_daemon_writes_is_a_writable_volume() -> None:
    """The state file's directory (SQLite writes its WAL beside it) and TMPDIR; nothing else is writable."""
    state_dir = str(Path(daemon_config()["state"]["path"]).parent)
    writable = {path for path, mount in mounts().items() if not mount.get("readOnly")}
    assert writable == {state_dir, env()["TMPDIR"]["value"]}


def test_the_history_lives_on_a_claim_per_shard() -> None:
    """History survives restarts only on a PersistentVolumeClaim (deploy/README.md): the state volume is a claim
    template, one per pod and so per shard, not an emptyDir."""
    statefulset = the("StatefulSet")
    state = mounts()[str(Path(daemon_config()["state"]["path"]).parent)]["name"]
    assert state not in volumes()
    [claim] = [t for t in statefulset["spec"]["volumeClaimTemplates"] if t["metadata"]["name"] == state]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_the_probes_ask_the_metrics_endpoint() -> None:
    port = metrics_port()
    assert int(daemon_config()["metrics"]["listen"].rpartition(":")[2]) == port["containerPort"]
    assert daemon_config()["metrics"]["listen"].startswith("0.0.0.0:")  # reachable from Prometheus and the kubelet
    for probe in ("readinessProbe", "livenessProbe"):
        assert container()[probe]["httpGet"] == {"path": "/metrics", "port": port["name"]}


def metrics_port() -> dict[str, Any]:
    [port] = container()["ports"]
    return dict(port)


BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9, "": 1}


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("160Mi", "256M") in bytes."""
    match = re.fullmatch(r"(\d+)([KMG]i?|k)?", quantity)
    assert match is not None, quantity
    return int(match.group(1)) * BINARY_SUFFIXES[match.group(2) or ""]


def test_memory_request_covers_the_memory_target_and_the_limit_leaves_headroom() -> None:
    resources = container()["resources"]
    requested = quantity_bytes(resources["requests"]["memory"])
    limit = quantity_bytes(resources["limits"]["memory"])
    assert MEMORY_TARGET_BYTES <= requested < limit <= 2 * requested
    assert "cpu" in resources["requests"]


def test_the_headless_service_governs_the_statefulset_and_selects_its_pods() -> None:
    service = the("Service")
    assert service["spec"]["clusterIP"] == "None"
    assert the("StatefulSet")["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod_labels().items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == metrics_port()["name"] and port["port"] == metrics_port()["containerPort"]


# -- Prometheus -----------------------------------------------------------------------------------------------------

def alert_job() -> str:
    """The job the shipped alert rules watch (DupewatchExporterDown: up{job="..."})."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    [down] = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "DupewatchExporterDown"]
    match = re.search(r'up\{job="([^"]+)"\}', down["expr"])
    assert match is not None
    return match.group(1)


def pod_meta_labels(name: str, namespace: str, labels: dict[str, str], port: dict[str, Any]) -> dict[str, str]:
    """What Kubernetes service discovery (role pod) says of one container port of a pod."""
    meta = {"__address__": f"10.0.0.1:{port['containerPort']}", "__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_pod_name": name, "__meta_kubernetes_pod_container_name": container()["name"],
            "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
            "__meta_kubernetes_pod_container_port_number": str(port["containerPort"])}
    for label, value in labels.items():
        meta["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)] = value
    return meta


def relabel(meta: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabelling (keep, drop, replace) of one target; None if it is dropped. Accepts the Prometheus
    spelling (source_labels) and the Operator's (sourceLabels)."""
    labels = dict(meta)
    for config in configs:
        sources = config.get("source_labels") or config.get("sourceLabels") or []
        value = config.get("separator", ";").join(labels.get(source, "") for source in sources)
        match = re.fullmatch(config.get("regex", "(.*)"), value)
        action = config.get("action", "replace")
        if (action == "keep" and match is None) or (action == "drop" and match is not None):
            return None
        if action == "replace" and match is not None:
            target = config.get("target_label") or config.get("targetLabel")
            labels[target] = match.expand(config.get("replacement", r"\1").replace("$", "\\"))
    return {name: value for name, value in labels.items() if not name.startswith("__meta_")}


def discovered_targets(job: dict[str, Any], pods: dict[str, dict[str, str]],
                       namespace: str) -> Iterator[dict[str, str]]:
    """The targets `job` scrapes among `pods` (name -> labels, every container port of ours) in `namespace`."""
    [sd] = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    if namespace not in sd["namespaces"]["names"]:
        return
    for name, labels in pods.items():
        wanted = dict(pair.split("=") for s in sd.get("selectors", []) for pair in s["label"].split(","))
        if wanted.items() <= labels.items():
            for port in container()["ports"]:
                target = relabel(pod_meta_labels(name, namespace, labels, port), job.get("relabel_configs", []))
                if target is not None:
                    yield target


def shard_pods() -> dict[str, dict[str, str]]:
    statefulset = the("StatefulSet")
    return {f"{statefulset['metadata']['name']}-{i}": pod_labels() for i in range(statefulset["spec"]["replicas"])}


def test_the_scrape_job_finds_every_shard_on_its_metrics_port_and_names_its_pod() -> None:
    job = scrape_job()
    assert job["job_name"] == alert_job()
    namespace = the("StatefulSet")["metadata"]["namespace"]
    found = list(discovered_targets(job, shard_pods(), namespace))
    assert [(t["pod"], t["namespace"], t["__address__"].rpartition(":")[2]) for t in found] == [
        (pod, namespace, str(metrics_port()["containerPort"])) for pod in shard_pods()]


def test_the_scrape_job_leaves_other_pods_alone() -> None:
    job = scrape_job()
    namespace = the("StatefulSet")["metadata"]["namespace"]
    other_app = {"postgres-0": {**pod_labels(), "app.kubernetes.io/name": "postgres"}}
    assert list(discovered_targets(job, other_app, namespace)) == []
    assert list(discovered_targets(job, shard_pods(), "default")) == []


def check_config(promtool: str, config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)


def knows_kubernetes_sd(promtool: str, tmp_path: Path) -> bool:
    probe = {"scrape_configs": [{"job_name": "probe", "kubernetes_sd_configs": [{"role": "pod"}]}]}
    return check_config(promtool, probe, tmp_path).returncode == 0


def test_promtool_accepts_the_scrape_config(promtool: str, tmp_path: Path) -> None:
    shipped = yaml.safe_load((KUBERNETES / "prometheus-scrape.yml").read_text(encoding="utf-8"))
    if not knows_kubernetes_sd(promtool, tmp_path):  # Debian's build: the rest of the job, by promtool
        [job] = shipped["scrape_configs"]
        del job["kubernetes_sd_configs"]
        job["static_configs"] = [{"targets": ["dupewatch-0.dupewatch.dupewatch.svc:9641"]}]
    checked = check_config(promtool, shipped, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_podmonitor_selects_the_shards_as_the_alerts_name_them() -> None:
    podmonitor = the("PodMonitor")["spec"]
    assert podmonitor["selector"]["matchLabels"].items() <= pod_labels().items()
    assert podmonitor["namespaceSelector"]["matchNames"] == [the("StatefulSet")["metadata"]["namespace"]]
    [endpoint] = podmonitor["podMetricsEndpoints"]
    assert endpoint["port"] == metrics_port()["name"]
    assert pod_labels()[podmonitor["jobLabel"]] == alert_job()


def test_both_scrape_configurations_label_a_shard_alike() -> None:
    """Whether Prometheus runs with the Operator or without, a shard's series carry the same `pod` and `namespace`."""
    [endpoint] = the("PodMonitor")["spec"]["podMetricsEndpoints"]
    namespace = the("StatefulSet")["metadata"]["namespace"]
    for pod, labels in shard_pods().items():
        meta = pod_meta_labels(pod, namespace, labels, metrics_port())
        by_operator = relabel(meta, endpoint["relabelings"])
        [by_prometheus] = list(discovered_targets(scrape_job(), {pod: labels}, namespace))
        assert by_operator is not None
        assert by_operator["pod"] == by_prometheus["pod"] == pod
        assert by_operator["namespace"] == by_prometheus["namespace"] == namespace


def test_a_shard_started_again_with_another_address_is_the_same_instance() -> None:
    """The alert rules bridge a daemon's restart by the last sample of the same series (`last_over_time`), and an
    alert's `for:` by its labels: a shard's pod started again (a rollout, a drained node) gets another IP, and with
    the address as `instance` every alert of the shard was another alert, its 10 minutes started again."""
    [endpoint] = the("PodMonitor")["spec"]["podMetricsEndpoints"]
    namespace = the("StatefulSet")["metadata"]["namespace"]
    for pod, labels in shard_pods().items():
        instances = set()
        for address in ("10.0.0.1", "10.0.7.42"):
            meta = {**pod_meta_labels(pod, namespace, labels, metrics_port()),
                    "__address__": f"{address}:{metrics_port()['containerPort']}"}
            by_operator = relabel(meta, endpoint["relabelings"])
            [by_prometheus] = [relabel(meta, scrape_job()["relabel_configs"])]
            for target in (by_operator, by_prometheus):
                assert target is not None
                instances.add(target.get("instance", target["__address__"]))  # Prometheus's default
        assert instances == {pod}, instances
