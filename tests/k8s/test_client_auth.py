"""exalb's own API client (no ``kubernetes`` package) against the real kube-apiserver:
client certificates and CA given inline as data, bearer tokens, and a wrong CA refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from exalb.k8s.client import ApiError, KubeClient
from exalb.k8s.resources import NAMESPACES
from lab.controlplane import ControlPlane

pytestmark = pytest.mark.k8s


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _inline(cp: ControlPlane, tmp_path: Path, ca: Path) -> Path:
    """The admin kubeconfig with every file turned into ``*-data``."""
    doc = yaml.safe_load(cp.kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    cluster.pop("certificate-authority")
    cluster["certificate-authority-data"] = _b64(ca)
    user = doc["users"][0]["user"]
    user["client-certificate-data"] = _b64(Path(user.pop("client-certificate")))
    user["client-key-data"] = _b64(Path(user.pop("client-key")))
    path = tmp_path / "inline.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_inline_certificates(control_plane: ControlPlane, tmp_path: Path) -> None:
    kube = KubeClient(str(_inline(control_plane, tmp_path, control_plane.authority.ca.cert)))
    names = {o["metadata"]["name"] for o in kube.list(NAMESPACES).items}
    assert "default" in names


def test_a_server_certificate_from_another_ca_is_refused(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    # the client certificate is no CA of the server: verification must fail
    doc = yaml.safe_load(control_plane.kubeconfig.read_text())
    other.write_bytes(Path(doc["users"][0]["user"]["client-certificate"]).read_bytes())
    kube = KubeClient(str(_inline(control_plane, tmp_path, other)), retry_for=0)
    with pytest.raises(ApiError) as err:
        kube.list(NAMESPACES)
    assert err.value.status == 0 and "CERTIFICATE_VERIFY_FAILED" in str(err.value)


def test_bearer_token_and_its_rights(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.api(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody"}},
    )
    token = control_plane.create_token(namespace, "nobody")
    kube = KubeClient(str(control_plane.write_token_kubeconfig(token, f"nobody-{namespace}")))
    with pytest.raises(ApiError) as err:  # authenticated (not 401), but granted nothing
        kube.list(NAMESPACES)
    assert err.value.status == 403 and f"system:serviceaccount:{namespace}:nobody" in str(err.value)


def test_a_credential_plugin_kubeconfig_goes_through_the_official_loader(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """An ``exec`` plugin (as cloud kubeconfigs have): the kubernetes package runs it, and
    the token it prints authenticates exalb's own transport."""
    control_plane.api(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "plugged"}},
    )
    token = control_plane.create_token(namespace, "plugged")
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token},
    }
    script = tmp_path / "plugin.sh"
    script.write_text(f"#!/bin/sh\ncat <<'END'\n{json.dumps(credential)}\nEND\n")
    script.chmod(0o700)
    doc = yaml.safe_load(control_plane.kubeconfig.read_text())
    doc["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(script),
            "interactiveMode": "Never",
        }
    }
    path = tmp_path / "plugin.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    kube = KubeClient(str(path))
    with pytest.raises(ApiError) as err:  # the plugin's identity: authenticated, no rights
        kube.list(NAMESPACES)
    assert err.value.status == 403 and f"system:serviceaccount:{namespace}:plugged" in str(
        err.value
    )
