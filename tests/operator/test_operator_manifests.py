"""Pure rendering of a SpiralJob's children: exact manifests, real Kubernetes schemas, minimal roll-outs."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from spiral.config import Role, load_config
from spiral_operator.manifests import (
    CONFIG_HASH_ANNOTATION,
    RESTART_GENERATION_ANNOTATION,
    config_hash,
    merge_template,
    render_children,
    render_config_yaml,
)
from spiral_operator.spec import SpiralJobSpec, parse_spec, to_train_config

K8S_VERSION = "1.33"
NAME, NS = "paint", "research"
#: The default reward is l2: no replay, no discriminator learner.
MINIMAL: dict[str, Any] = {"image": "ghcr.io/spiral-k8s/spiral:0.1.0", "training": {"totalFrames": 1000}}
#: The GAN reward: every role.
DISCRIMINATOR: dict[str, Any] = {**MINIMAL, "reward": {"kind": "discriminator"}}
FULL: dict[str, Any] = {
    **DISCRIMINATOR,
    "imagePullSecrets": ["regcred"],
    "dataset": {"name": "mnist", "path": "/data/mnist", "volume": {"persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}}},
    "actor": {
        "replicas": 3,
        "maxReplicas": 6,
        "nodeSelector": {"pool": "cpu"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "spiral", "effect": "NoSchedule"}],
        "template": {
            "metadata": {"annotations": {"team": "paint"}},
            "spec": {"priorityClassName": "low", "containers": [{"name": "actor", "env": [{"name": "OMP_NUM_THREADS", "value": "1"}]}]},
        },
    },
    "checkpoint": {"existingClaim": "ckpt", "accessMode": "ReadWriteMany"},
    "monitoring": {"serviceMonitor": True, "interval": "15s", "metricsNamespaceSelector": {"kubernetes.io/metadata.name": "monitoring"}},
    "tls": {"secretName": "paint-tls"},
}


def children(spec: dict[str, Any], **kwargs: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["kind"], c["metadata"]["name"]): c for c in render_children(parse_spec(spec), NAME, NS, **kwargs)}


def _labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "spiral",
        "app.kubernetes.io/instance": NAME,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "spiral-operator",
        "spiral.dev/job-name": NAME,
        "spiral.dev/role": component,
    }


def test_children_names_and_order() -> None:
    assert list(children(DISCRIMINATOR)) == [
        ("ConfigMap", "paint-config"),
        ("ServiceAccount", "paint-pods"),
        ("PersistentVolumeClaim", "paint-checkpoints"),
        ("Service", "paint-policy-learner"),
        ("StatefulSet", "paint-policy-learner"),
        ("Service", "paint-discriminator-learner"),
        ("StatefulSet", "paint-discriminator-learner"),
        ("Service", "paint-replay"),
        ("StatefulSet", "paint-replay"),
        ("Service", "paint-actor"),
        ("Deployment", "paint-actor"),
        ("NetworkPolicy", "paint-grpc"),
    ]
    full = children(FULL)
    assert ("ServiceMonitor", "paint") in full and ("PersistentVolumeClaim", "paint-checkpoints") not in full


def test_l2_job_renders_no_replay_and_no_discriminator_learner() -> None:
    assert list(children(MINIMAL)) == [
        ("ConfigMap", "paint-config"),
        ("ServiceAccount", "paint-pods"),
        ("PersistentVolumeClaim", "paint-checkpoints"),
        ("Service", "paint-policy-learner"),
        ("StatefulSet", "paint-policy-learner"),
        ("Service", "paint-actor"),
        ("Deployment", "paint-actor"),
        ("NetworkPolicy", "paint-grpc"),
    ]
    l2_full = children({**FULL, "reward": {"kind": "l2"}})
    assert not [key for key, child in l2_full.items() if child["metadata"]["labels"]["spiral.dev/role"] in ("replay", "discriminator-learner")]
    # The roles rendered are exactly the config's own answer, the one the launcher uses.
    config = yaml.safe_load(l2_full[("ConfigMap", "paint-config")]["data"]["config.yaml"])
    assert config["reward"]["kind"] == "l2"
    assert to_train_config(parse_spec({**FULL, "reward": {"kind": "l2"}}), NAME, NS).roles() == (Role.POLICY_LEARNER, Role.ACTOR)


def test_discriminator_job_renders_replay_and_discriminator_learner_statefulsets_and_services() -> None:
    got = children(DISCRIMINATOR)
    for role in ("replay", "discriminator-learner"):
        sts, service = got[("StatefulSet", f"paint-{role}")], got[("Service", f"paint-{role}")]
        assert sts["spec"]["replicas"] == 1 and sts["spec"]["serviceName"] == f"paint-{role}"
        assert sts["spec"]["template"]["spec"]["containers"][0]["command"][:3] == ["spiral", "serve", role]
        assert service["spec"]["selector"] == {"spiral.dev/job-name": NAME, "spiral.dev/role": role}
        assert [p["name"] for p in service["spec"]["ports"]] == ["grpc", "metrics"]
    assert parse_spec(DISCRIMINATOR).roles() == (Role.REPLAY, Role.DISCRIMINATOR_LEARNER, Role.POLICY_LEARNER, Role.ACTOR)


def test_exact_policy_learner_statefulset_and_service() -> None:
    spec = parse_spec(MINIMAL)
    digest = config_hash(render_config_yaml(spec, NAME, NS))
    got = children(MINIMAL)
    probe = {"grpc": {"port": 50051}, "timeoutSeconds": 5}
    assert got[("StatefulSet", "paint-policy-learner")] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "paint-policy-learner", "namespace": NS, "labels": _labels("policy-learner")},
        "spec": {
            "replicas": 1,
            "serviceName": "paint-policy-learner",
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": {"spiral.dev/job-name": NAME, "spiral.dev/role": "policy-learner"}},
            "template": {
                "metadata": {"labels": _labels("policy-learner"), "annotations": {CONFIG_HASH_ANNOTATION: digest, RESTART_GENERATION_ANNOTATION: "0"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 60,
                    "serviceAccountName": "paint-pods",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "policy-learner",
                            "image": "ghcr.io/spiral-k8s/spiral:0.1.0",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["spiral", "serve", "policy-learner", "--config", "/etc/spiral/config.yaml"],
                            "env": [{"name": "SPIRAL_JOB_NAME", "value": NAME}, {"name": "HOME", "value": "/tmp"}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
                            "ports": [
                                {"name": "grpc", "containerPort": 50051, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": 9400, "protocol": "TCP"},
                            ],
                            "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 30},
                            "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
                            "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 3},
                            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/spiral/config.yaml", "subPath": "config.yaml", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                                {"name": "checkpoints", "mountPath": "/checkpoints"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "paint-config", "items": [{"key": "config.yaml", "path": "config.yaml"}]}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "paint-checkpoints"}},
                    ],
                },
            },
        },
    }
    assert got[("Service", "paint-policy-learner")] == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "paint-policy-learner", "namespace": NS, "labels": _labels("policy-learner")},
        "spec": {
            "clusterIP": "None",
            "selector": {"spiral.dev/job-name": NAME, "spiral.dev/role": "policy-learner"},
            "ports": [
                {"name": "grpc", "port": 50051, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "metrics", "port": 9400, "targetPort": "metrics", "protocol": "TCP", "appProtocol": "http"},
            ],
            "publishNotReadyAddresses": True,
        },
    }


def test_exact_network_policy_pvc_and_service_monitor() -> None:
    got = children(MINIMAL)
    assert got[("NetworkPolicy", "paint-grpc")]["spec"] == {
        "podSelector": {"matchLabels": {"spiral.dev/job-name": NAME}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"spiral.dev/job-name": NAME}}}], "ports": [{"protocol": "TCP", "port": 50051}]},
            {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 9400}]},
        ],
    }
    assert got[("PersistentVolumeClaim", "paint-checkpoints")]["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    full = children(FULL)
    assert full[("NetworkPolicy", "paint-grpc")]["spec"]["ingress"][1]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    monitor = full[("ServiceMonitor", "paint")]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"] == {
        "selector": {"matchLabels": {"spiral.dev/job-name": NAME, "app.kubernetes.io/managed-by": "spiral-operator"}},
        "namespaceSelector": {"matchNames": [NS]},
        "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
    }
    # Every Service the monitor selects exposes the `metrics` port it scrapes: one per role the job runs.
    for spec in (FULL, {**FULL, "reward": {"kind": "l2"}}):
        services = [c for c in children(spec).values() if c["kind"] == "Service"]
        assert sorted(s["metadata"]["labels"]["spiral.dev/role"] for s in services) == sorted(r.value for r in parse_spec(spec).roles())
        for service in services:
            assert all(service["metadata"]["labels"][k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
            assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("spec", [MINIMAL, DISCRIMINATOR, FULL], ids=["minimal", "discriminator", "full"])
def test_children_validate_against_kubernetes_schemas(spec: dict[str, Any]) -> None:
    for child in render_children(parse_spec(spec), NAME, NS):
        assert child["metadata"]["labels"] == _labels(child["metadata"]["labels"]["spiral.dev/role"])
        if child["kind"] == "ServiceMonitor":
            continue  # a CRD kind: checked by structure above
        kubernetes_validate.validate(child, K8S_VERSION, strict=True)


def test_full_spec_pods_get_tls_data_tolerations_and_the_override() -> None:
    full = children(FULL)
    actor = full[("Deployment", "paint-actor")]
    assert actor["spec"]["replicas"] == 3
    pod = actor["spec"]["template"]
    assert pod["metadata"]["annotations"]["team"] == "paint"  # override merged ...
    assert CONFIG_HASH_ANNOTATION in pod["metadata"]["annotations"]  # ... without losing ours
    assert pod["spec"]["priorityClassName"] == "low"
    container = pod["spec"]["containers"][0]
    assert [e["name"] for e in container["env"]] == ["SPIRAL_JOB_NAME", "HOME", "PYTHONUNBUFFERED", "OMP_NUM_THREADS"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "spiral", "effect": "NoSchedule"}]
    assert pod["spec"]["nodeSelector"] == {"pool": "cpu"}
    # Every pod runs as the job's own account (issue #14: a spec could name any account before).
    assert pod["spec"]["serviceAccountName"] == "paint-pods" and pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert full[("ServiceAccount", "paint-pods")]["automountServiceAccountToken"] is False
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data"] == {"name": "data", "mountPath": "/data", "readOnly": True}
    assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/spiral/tls", "readOnly": True}
    assert "checkpoints" not in mounts  # actors do not checkpoint
    learner_volumes = {v["name"]: v for v in full[("StatefulSet", "paint-policy-learner")]["spec"]["template"]["spec"]["volumes"]}
    assert learner_volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "ckpt"}
    assert learner_volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}}
    assert learner_volumes["tls"]["secret"]["secretName"] == "paint-tls"
    # ReadWriteMany: no co-scheduling constraint; ReadWriteOnce: the discriminator learner follows the policy learner.
    assert "affinity" not in full[("StatefulSet", "paint-discriminator-learner")]["spec"]["template"]["spec"]
    affinity = children(DISCRIMINATOR)[("StatefulSet", "paint-discriminator-learner")]["spec"]["template"]["spec"]["affinity"]
    term = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["labelSelector"]["matchLabels"]["spiral.dev/role"] == "policy-learner"


def test_config_map_is_a_loadable_train_config_with_service_addresses(tmp_path: Any) -> None:
    for spec_dict, tls in [(MINIMAL, False), (FULL, True)]:
        spec = parse_spec(spec_dict)
        text = children(spec_dict)[("ConfigMap", "paint-config")]["data"]["config.yaml"]
        path = tmp_path / "config.yaml"
        path.write_text(text)
        loaded = load_config(path)  # what `spiral serve --config` does in the pod
        assert loaded == to_train_config(spec, NAME, NS)
        services = loaded.services
        assert services.policy_learner_address == "paint-policy-learner:50051"
        assert services.discriminator_learner_address == "paint-discriminator-learner:50051"
        assert services.replay_address == "paint-replay:50051"
        assert services.bind_address == "0.0.0.0"
        assert services.allow_insecure is (not tls)
        assert services.tls.enabled is tls
        if tls:
            assert str(services.tls.cert_file) == "/etc/spiral/tls/tls.crt" and str(services.tls.ca_file) == "/etc/spiral/tls/ca.crt"
        assert str(loaded.output_dir) == "/checkpoints"
        assert loaded.total_frames == 1000


def _diff(a: dict[Any, Any], b: dict[Any, Any]) -> set[Any]:
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


def test_rendering_is_deterministic() -> None:
    assert render_children(parse_spec(FULL), NAME, NS) == render_children(parse_spec(FULL), NAME, NS)


def test_scaling_actors_changes_only_the_actor_deployment() -> None:
    before = children(MINIMAL)
    after = children({**MINIMAL, "actor": {"replicas": 5}})
    assert _diff(before, after) == {("Deployment", "paint-actor")}
    assert after[("Deployment", "paint-actor")]["spec"]["replicas"] == 5
    assert before[("Deployment", "paint-actor")]["spec"]["template"] == after[("Deployment", "paint-actor")]["spec"]["template"]


def test_config_change_rolls_every_pod_through_the_config_hash() -> None:
    before = children(MINIMAL)
    after = children({**MINIMAL, "training": {"totalFrames": 1000, "learningRate": 1e-4}})
    workloads = {k for k in before if k[0] in ("StatefulSet", "Deployment")}
    assert _diff(before, after) == workloads | {("ConfigMap", "paint-config")}
    for key in workloads:
        hashes = {c[key]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] for c in (before, after)}
        assert len(hashes) == 2


def test_suspend_and_stopped_roles_scale_workloads_to_zero() -> None:
    suspended = children({**DISCRIMINATOR, "runPolicy": {"suspend": True}})
    assert {k: c["spec"]["replicas"] for k, c in suspended.items() if "replicas" in c.get("spec", {})} == {
        ("StatefulSet", "paint-policy-learner"): 0,
        ("StatefulSet", "paint-discriminator-learner"): 0,
        ("StatefulSet", "paint-replay"): 0,
        ("Deployment", "paint-actor"): 0,
    }
    assert ("PersistentVolumeClaim", "paint-checkpoints") in suspended  # checkpoints survive the suspension
    stopped = children(DISCRIMINATOR, stopped=frozenset({Role.ACTOR, Role.REPLAY}))
    assert stopped[("Deployment", "paint-actor")]["spec"]["replicas"] == 0
    assert stopped[("StatefulSet", "paint-replay")]["spec"]["replicas"] == 0
    assert stopped[("StatefulSet", "paint-policy-learner")]["spec"]["replicas"] == 1


def test_restart_generation_reaches_learners_and_replay_only() -> None:
    before, after = children(DISCRIMINATOR), children(DISCRIMINATOR, restart_generation=2)
    changed = _diff(before, after)
    assert changed == {("StatefulSet", f"paint-{r}") for r in ("policy-learner", "discriminator-learner", "replay")}
    for key in changed:
        assert after[key]["spec"]["template"]["metadata"]["annotations"][RESTART_GENERATION_ANNOTATION] == "2"


def test_merge_template_merges_named_lists_and_replaces_the_rest() -> None:
    base = {"spec": {"containers": [{"name": "a", "image": "x", "args": ["1"]}], "dnsPolicy": "ClusterFirst", "volumes": [{"name": "v", "emptyDir": {}}]}}
    override = {"spec": {"containers": [{"name": "a", "args": ["2"]}, {"name": "sidecar", "image": "y"}], "dnsPolicy": "None"}}
    merged = merge_template(base, override)
    assert merged == {
        "spec": {
            "containers": [{"name": "a", "image": "x", "args": ["2"]}, {"name": "sidecar", "image": "y"}],
            "dnsPolicy": "None",
            "volumes": [{"name": "v", "emptyDir": {}}],
        }
    }
    assert base["spec"]["containers"][0]["args"] == ["1"]  # inputs untouched


def test_a_template_outside_the_allow_list_is_refused_by_the_operator() -> None:
    """The template was an unchecked escape hatch (issue #14, finding 7): now any field outside the
    allow-list is an invalid spec, named, before anything is rendered."""
    from spiral_operator.spec import SpecError

    with pytest.raises(SpecError, match=r"spec\.replay\.template\.spec\.restartPolicy: unknown field"):
        parse_spec({**DISCRIMINATOR, "replay": {"template": {"spec": {"restartPolicy": 7}}}})
    with pytest.raises(SpecError, match=r"template\.spec\.containers names \['sidecar'\]; the only container is 'actor'"):
        render_children(parse_spec({**MINIMAL, "actor": {"template": {"spec": {"containers": [{"name": "sidecar"}]}}}}), NAME, NS)


def test_the_replay_pod_mounts_the_checkpoint_volume_and_follows_the_learner() -> None:
    """Issue #14, finding 6: the replay pod had no checkpoint mount and a read-only root, so its
    SIGTERM checkpoint failed and every restart emptied the buffer."""
    got = children(DISCRIMINATOR)
    pod = got[("StatefulSet", "paint-replay")]["spec"]["template"]["spec"]
    assert {"name": "checkpoints", "mountPath": "/checkpoints"} in pod["containers"][0]["volumeMounts"]
    assert {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "paint-checkpoints"}} in pod["volumes"]
    config = yaml.safe_load(got[("ConfigMap", "paint-config")]["data"]["config.yaml"])
    assert config["output_dir"] == "/checkpoints" and config["replay"]["checkpoint_every_seconds"] == 60.0  # → /checkpoints/replay/replay.ckpt
    term = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]  # ReadWriteOnce: next to the learner
    assert term["labelSelector"]["matchLabels"]["spiral.dev/role"] == "policy-learner"


def test_tls_pods_probe_a_loopback_plaintext_health_port() -> None:
    """Issue #14, finding 9: with spec.tls the pods kept plaintext gRPC probes against an mTLS port,
    so they could never become Ready."""
    pod = children(FULL)[("Deployment", "paint-actor")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == ["python", "-m", "spiral.services.health_probe", "127.0.0.1:50061"]
        assert "grpc" not in container[probe]
    config = yaml.safe_load(children(FULL)[("ConfigMap", "paint-config")]["data"]["config.yaml"])
    assert config["services"]["health_port"] == 50061 and config["services"]["tls"]["enabled"] is True
    assert "exec" not in children(MINIMAL)[("Deployment", "paint-actor")]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]


def test_spec_model_is_frozen() -> None:
    spec: SpiralJobSpec = parse_spec(MINIMAL)
    with pytest.raises(Exception, match="frozen"):
        spec.image = "other"  # type: ignore[misc]
    assert yaml.safe_load(render_config_yaml(spec, NAME, NS))["num_actors"] == spec.actor.max_replicas


def test_hyperparameters_config_map_is_mounted_as_a_folder_in_the_learners_only_and_named_in_their_config() -> None:
    """``spec.hyperparametersConfigMap``: the learners poll its file (no subPath, so the kubelet's updates reach them)."""
    rendered = children({**DISCRIMINATOR, "hyperparametersConfigMap": "paint-hp"})
    for role in (Role.POLICY_LEARNER, Role.DISCRIMINATOR_LEARNER, Role.REPLAY, Role.ACTOR):
        kind = "Deployment" if role == Role.ACTOR else "StatefulSet"
        pod = rendered[(kind, f"{NAME}-{role.value}")]["spec"]["template"]["spec"]
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        if role in (Role.POLICY_LEARNER, Role.DISCRIMINATOR_LEARNER):
            assert mounts["hyperparameters"] == {"name": "hyperparameters", "mountPath": "/etc/spiral/hyperparameters", "readOnly": True}
            assert volumes["hyperparameters"] == {"name": "hyperparameters", "configMap": {"name": "paint-hp"}}
        else:
            assert "hyperparameters" not in mounts and "hyperparameters" not in volumes
    config = to_train_config(parse_spec({**DISCRIMINATOR, "hyperparametersConfigMap": "paint-hp"}), NAME, NS)
    assert str(config.learner.hyperparameters_file) == "/etc/spiral/hyperparameters/hyperparameters.json"
    assert to_train_config(parse_spec(DISCRIMINATOR), NAME, NS).learner.hyperparameters_file is None


def test_hyperparameters_config_map_and_an_explicit_hyperparameters_file_are_refused_together() -> None:
    from spiral_operator.spec import SpecError

    with pytest.raises(SpecError, match=r"training.hyperparametersFile .*hyperparametersConfigMap"):
        parse_spec({**MINIMAL, "training": {"totalFrames": 1000, "hyperparametersFile": "/x.json"}, "hyperparametersConfigMap": "hp"})
