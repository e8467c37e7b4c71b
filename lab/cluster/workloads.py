"""Manifests the lab puts on a cluster: the backend Deployment and its LoadBalancer Service.

The backend is ``scripts/image.sh``'s busybox ``httpd`` image; every pod answers ``GET /``
with ``pod=<its name> node=<its node>`` (downward API), so a client can tell which node and
pod served it, and echoes bytes on ``ECHO_PORT`` (long-lived connections). Pure: values in,
manifest text out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

BACKEND_PORT = 8080
ECHO_PORT = 9000


def backend_deployment(
    name: str,
    namespace: str,
    image: str,
    replicas: int,
    node_selector: Mapping[str, str] | None = None,
    *,
    pod_labels: Mapping[str, str] | None = None,
    pre_stop_sleep: int = 0,
) -> dict[str, Any]:
    """``pod_labels``: extra labels (a Service can select pods of several Deployments);
    ``pre_stop_sleep``: seconds a terminating pod keeps serving, so the endpoint is gone from
    every kube-proxy before the server exits (what zero-loss rollouts of a backend need)."""
    labels = {"app": name}
    pod_spec: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 2,
        # one pod per node while there are nodes enough, so spreads are visible
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": labels},
            }
        ],
        "containers": [_http_container(image)],
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
    }
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if pre_stop_sleep:
        pod_spec["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": pre_stop_sleep}}}
        pod_spec["terminationGracePeriodSeconds"] = pre_stop_sleep + 5
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, **(pod_labels or {})}},
                "spec": pod_spec,
            },
        },
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def load_balancer(
    name: str,
    namespace: str,
    *,
    selector: str | None = None,
    local: bool = False,
    annotations: Mapping[str, str] | None = None,
    port: int = 80,
    echo: bool = False,
    selector_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Service of type LoadBalancer in front of the backend pods labelled ``app=selector``
    (or ``selector_labels``); ``echo`` adds the echo port (same number outside and in)."""
    ports = [{"name": "http", "port": port, "targetPort": BACKEND_PORT}]
    if echo:
        ports.append({"name": "echo", "port": ECHO_PORT, "targetPort": ECHO_PORT})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations or {})},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local" if local else "Cluster",
            "selector": dict(selector_labels or {"app": selector or name}),
            "ports": ports,
        },
    }


def dump(*objects: Mapping[str, Any]) -> str:
    return yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False)


def _http_container(image: str) -> dict[str, Any]:
    """The backend's one container: answers with its pod and node name, read-only, no caps."""
    return {
        "name": "http",
        "image": image,
        "imagePullPolicy": "Never",
        "env": [
            _field_env("POD_NAME", "metadata.name"),
            _field_env("NODE_NAME", "spec.nodeName"),
            {"name": "PORT", "value": str(BACKEND_PORT)},
        ],
        "ports": [
            {"name": "http", "containerPort": BACKEND_PORT},
            {"name": "echo", "containerPort": ECHO_PORT},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
