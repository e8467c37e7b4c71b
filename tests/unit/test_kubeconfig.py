"""The kubeconfig / in-cluster loader (exalb.k8s.kubeconfig) and the token file refresh."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exalb.k8s import kubeconfig
from exalb.k8s.kubeconfig import KubeconfigError
from exalb.k8s.transport import TOKEN_REFRESH, _TokenFile

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, current: str, *, clusters=(), users=(), contexts=()) -> Path:  # type: ignore[no-untyped-def]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [{"name": n, "cluster": c} for n, c in clusters],
        "users": [{"name": n, "user": u} for n, u in users],
        "contexts": [{"name": n, "context": c} for n, c in contexts],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_relative_paths_inline_data_and_namespace(tmp_path: Path) -> None:
    ca = base64.b64encode(b"PEM-CA").decode()
    path = _write(
        tmp_path / "conf" / "config",
        "dev",
        clusters=[("c", {"server": "https://198.51.100.1:6443/", "certificate-authority-data": ca,
                         "tls-server-name": "api.lab"})],
        users=[("u", {"client-certificate": "u.crt", "client-key": "/abs/u.key"})],
        contexts=[("dev", {"cluster": "c", "user": "u", "namespace": "team"})],
    )  # fmt: skip
    creds = kubeconfig.load(str(path), {})
    assert creds.server == "https://198.51.100.1:6443"
    assert creds.ca_data == b"PEM-CA" and creds.ca_file is None
    assert creds.tls_server_name == "api.lab"
    assert creds.cert_file == str(tmp_path / "conf" / "u.crt")
    assert creds.key_file == "/abs/u.key"
    assert creds.namespace == "team" and not creds.needs_official_loader
    assert kubeconfig.current_namespace(str(path), {}) == "team"


def test_kubeconfig_list_first_file_wins(tmp_path: Path) -> None:
    """kubectl's merge: current-context from the first file that sets one, each named
    entry from the first file that has it."""
    a = _write(tmp_path / "a", "", clusters=[("c", {"server": "https://198.51.100.1"})])
    b = _write(
        tmp_path / "b",
        "ctx",
        clusters=[("c", {"server": "https://198.51.100.2"})],
        users=[("u", {"token": "t0k"})],
        contexts=[("ctx", {"cluster": "c", "user": "u"})],
    )
    env = {"KUBECONFIG": f"{a}:{tmp_path / 'missing'}:{b}"}
    creds = kubeconfig.load(None, env)
    assert creds.server == "https://198.51.100.1" and creds.token == "t0k"


def test_plugins_and_proxies_go_to_the_official_loader(tmp_path: Path) -> None:
    for user, cluster in (
        ({"exec": {"command": "aws"}}, {}),
        ({"auth-provider": {"name": "oidc"}}, {}),
        ({"username": "a", "password": "b"}, {}),
        ({"token": "x"}, {"proxy-url": "http://proxy"}),
    ):
        path = _write(
            tmp_path / "k",
            "x",
            clusters=[("c", {"server": "https://198.51.100.1", **cluster})],
            users=[("u", user)],
            contexts=[("x", {"cluster": "c", "user": "u"})],
        )
        creds = kubeconfig.load(str(path), {})
        assert creds.needs_official_loader and creds.source == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("- a\n- b\n", "a mapping is expected"),
        ("a: [", "not YAML"),
        ("current-context: x\n", "'x' is not in contexts"),
        ("clusters: 5\n", "clusters must be a list"),
        ("contexts: [{context: {}}]\n", "an entry without a name"),
        (
            "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
            "clusters: [{name: c, cluster: {server: ftp://h}}]\n",
            "server 'ftp://h'",
        ),
        (
            "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
            "clusters: [{name: c, cluster: {server: 'https://h',"
            " certificate-authority-data: '*'}}]\n",
            "certificate-authority-data: not base64",
        ),
    ],
)
def test_bad_kubeconfigs_are_named_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "k"
    path.write_text(text)
    with pytest.raises(KubeconfigError, match=message):
        kubeconfig.load(str(path), {})


def test_missing_and_huge_files(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="no such file"):
        kubeconfig.load(str(tmp_path / "nope"), {})
    with pytest.raises(KubeconfigError, match="no kubeconfig found"):
        kubeconfig.load(None, {"HOME": str(tmp_path)})
    huge = tmp_path / "huge"
    huge.write_bytes(b"#" * (kubeconfig.MAX_KUBECONFIG_BYTES + 1))
    with pytest.raises(KubeconfigError, match="larger than"):
        kubeconfig.load(str(huge), {})


def test_in_cluster(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok\n")
    (tmp_path / "namespace").write_text("exalb-system")
    env = {"KUBERNETES_SERVICE_HOST": "2001:db8::1", "KUBERNETES_SERVICE_PORT": "6443"}
    creds = kubeconfig.in_cluster(env, tmp_path)
    assert creds.server == "https://[2001:db8::1]:6443"
    assert creds.ca_file == str(tmp_path / "ca.crt")
    assert creds.token_file == str(tmp_path / "token") and creds.namespace == "exalb-system"
    with pytest.raises(KubeconfigError, match="no service account token"):
        kubeconfig.in_cluster(env, tmp_path / "elsewhere")


def test_token_file_is_reread_after_the_refresh_interval(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one")
    now = [100.0]
    token = _TokenFile(str(path), clock=lambda: now[0])
    assert token() == "Bearer one"
    path.write_text("two")
    now[0] += TOKEN_REFRESH - 1
    assert token() == "Bearer one"
    now[0] += 1
    assert token() == "Bearer two"
    path.unlink()  # a failed read keeps the last token
    now[0] += TOKEN_REFRESH
    assert token() == "Bearer two"


def test_the_programs_do_not_load_the_kubernetes_package() -> None:
    """The generated client costs ~20 MiB per process; only the CLI's port-forward and
    credential plugins may import it (exalb.k8s.kubeconfig says why)."""
    code = (
        "import sys, controller.main, speaker.main, speaker.exabgp.bridge, garp.main\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
