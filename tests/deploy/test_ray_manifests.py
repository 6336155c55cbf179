"""Static validation of the Ray Serve configs (deploy/ray) and the KubeRay RayService
(deploy/kubernetes/ray): Ray's own config schema, our Settings, Kubernetes' pod schema."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.test_manifests import DEPLOY, run, tool

RAY = DEPLOY / "ray"
RAYSERVICE = DEPLOY / "kubernetes" / "ray" / "rayservice.yaml"
DEPLOYMENTS = {"JudgeEngine", "Gateway"}


def serve_config(text: str):  # type: ignore[no-untyped-def]
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema.model_validate(yaml.safe_load(text))


def check_application(config) -> None:  # type: ignore[no-untyped-def]
    from rrm_server.ray_serve import app as ray_app

    (application,) = config.applications
    assert application.name == ray_app.APP_NAME and application.route_prefix == "/"
    module, _, attr = application.import_path.partition(":")
    assert (module, attr) == (ray_app.__name__, "build_app")
    ray_app.settings_from_args(application.args)  # what build_app parses: every option a real one
    assert {d.name for d in application.deployments} <= DEPLOYMENTS


def test_the_serve_configs_pass_rays_schema_and_our_settings():
    for name in ("serve.yaml", "serve.cpu.yaml"):
        check_application(serve_config((RAY / name).read_text()))


def test_a_misspelt_option_is_an_error_not_a_default():
    from rrm_server.ray_serve.app import settings_from_args

    with pytest.raises(ValueError, match="engine_replica\\b"):
        settings_from_args({"engine_replica": 2})


def test_rays_schema_rejects_a_broken_config():
    from pydantic import ValidationError

    bad = ("applications:\n  - name: rrm\n    import_path: x:y\n    deployments:\n"
           "      - name: A\n        num_replicas: two\n")
    with pytest.raises(ValidationError):
        serve_config(bad)


def test_the_rayservice_embeds_the_serve_config_and_its_pods_validate(tmp_path):
    doc = yaml.safe_load(RAYSERVICE.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayService")
    embedded = serve_config(doc["spec"]["serveConfigV2"])
    check_application(embedded)
    assert embedded.applications == serve_config((RAY / "serve.yaml").read_text()).applications
    cluster = doc["spec"]["rayClusterConfig"]
    import ray

    assert cluster["rayVersion"] == ray.__version__  # the image's Ray must be the one pyproject pins
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i}"}, "spec": g["template"]["spec"]}
            for i, g in enumerate(groups)]
    out = tmp_path / "pods.yaml"
    out.write_text(yaml.safe_dump_all(pods))
    v = run(tool("kubernetes-validate"), "--strict", "--quiet", out)
    assert v.returncode == 0, v.stdout + v.stderr
    # Engine replicas ask for one GPU each; only the workers have GPUs, and enough for the maximum.
    engine = next(d for d in embedded.applications[0].deployments if d.name == "JudgeEngine")
    assert engine.ray_actor_options.num_gpus == 1
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    (gpu,) = cluster["workerGroupSpecs"]
    per_pod = int(gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert gpu["maxReplicas"] * per_pod >= embedded.applications[0].args["engine_max_replicas"]
