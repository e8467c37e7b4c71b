"""Manifests the lab puts on a cluster: the backend Deployment and its LoadBalancer Service.

The backend is ``scripts/image.sh``'s busybox ``httpd`` image; every pod answers ``GET /``
with ``pod=<its name> node=<its node>`` (downward API), so a client can tell which node and
pod served it. Pure: values in, manifest text out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

BACKEND_PORT = 8080


def backend_deployment(
    name: str,
    namespace: str,
    image: str,
    replicas: int,
    node_selector: Mapping[str, str] | None = None,
) -> dict[str, Any]:
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
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
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
) -> dict[str, Any]:
    """A Service of type LoadBalancer in front of the backend pods labelled ``app=selector``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations or {})},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local" if local else "Cluster",
            "selector": {"app": selector or name},
            "ports": [{"name": "http", "port": port, "targetPort": BACKEND_PORT}],
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
        "ports": [{"name": "http", "containerPort": BACKEND_PORT}],
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
