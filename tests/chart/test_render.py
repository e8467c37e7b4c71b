"""charts/exalb without a cluster: lint, golden renders, schema rejections, and that what the
chart renders is what the programs accept (their real argparse) and what the design asks for
(least capabilities, read-only root, probes, a volume per pair of containers that talk, a
user per container, no token where none is needed).

Regenerate the goldens after an intended chart change::

    EXALB_UPDATE_GOLDEN=1 .venv/bin/pytest tests/chart/test_render.py -k golden
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.main import parse_args as controller_args
from garp.main import parse_args as garp_args
from lab.binaries import Tools
from speaker.main import parse_args as speaker_args
from tests.chart.conftest import (
    CHART,
    GOLDEN,
    NAMESPACE,
    UPDATE_ENV,
    VALUES,
    containers,
    find,
    helm,
    render,
)

VALUE_SETS = sorted(p.stem for p in VALUES.glob("*.yaml"))
BGP_DIR = "/run/exalb/bgp"  # speaker <-> exabgp
L2_DIR = "/run/exalb/l2"  # speaker <-> garp
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: The chart-made garp probe key: random in every render without a cluster (nothing to look up).
RANDOM_KEY = re.compile(r"(?m)^(  key: )[A-Za-z0-9+/]{86}==$")
#: Values the downward API would give, substituted for $(VAR) in args.
DOWNWARD = {"NODE_NAME": "node-a", "POD_IP": "10.0.0.7", "POD_NAME": "exalb-controller-abc"}


def test_value_sets_exist() -> None:
    assert {"default", "full", "minimal", "crds-only"} <= set(VALUE_SETS)


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_strict(chart_tools: Tools, name: str) -> None:
    proc = helm(chart_tools, "lint", "--strict", str(CHART), "-f", str(VALUES / f"{name}.yaml"))
    assert "0 chart(s) failed" in proc.stdout, proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


# --------------------------------------------------------------------------- goldens


@pytest.mark.parametrize("name", VALUE_SETS)
def test_golden_render(chart_tools: Tools, name: str) -> None:
    proc = helm(
        chart_tools,
        "template", "exalb", str(CHART), "--namespace", NAMESPACE,
        "-f", str(VALUES / f"{name}.yaml"),
    )  # fmt: skip
    got = RANDOM_KEY.sub(r"\1<random>", proc.stdout)
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get(UPDATE_ENV) == "1":
        path.write_text(got)
        return
    assert path.exists(), f"{path} missing; run with {UPDATE_ENV}=1 to create it"
    want = path.read_text()
    if got != want:
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(keepends=True),
                got.splitlines(keepends=True),
                f"golden/{name}.yaml",
                "helm template",
            )
        )
        pytest.fail(
            f"render of values/{name}.yaml differs from the golden "
            f"(intended? rerun with {UPDATE_ENV}=1):\n{diff[:6000]}"
        )


# --------------------------------------------------------------------------- schema

SCHEMA_ERROR = "values don't meet the specifications of the schema"

#: (id, helm args, substrings the error must contain: the path, then the reason). The wording
#: is Helm 4's (santhosh-tekuri/jsonschema); Helm 3 says the same in other words.
REJECTED: list[tuple[str, list[str], tuple[str, ...]]] = [
    (
        "unknown-top-level-key",
        ["--set", "speakers.enabled=false"],
        ("additional properties", "'speakers'"),
    ),
    ("unknown-nested-key", ["--set", "controller.replica=2"], ("/controller", "'replica'")),
    (
        "unknown-config-item-key",
        ["--set-json", 'config.pools=[{"name":"a","spec":{},"adresses":[]}]'],
        ("/config/pools/0", "'adresses'"),
    ),
    (
        "replicas-not-integer",
        ["--set", "controller.replicas=two"],
        ("/controller/replicas", "want integer"),
    ),
    ("bool-as-string", ["--set-string", "garp.enabled=yes"], ("/garp/enabled", "want boolean")),
    (
        "port-out-of-range",
        ["--set", "speaker.metricsPort=70000"],
        ("/speaker/metricsPort", "maximum"),
    ),
    (
        "port-as-string",
        ["--set-string", "garp.probePort=7947"],
        ("/garp/probePort", "want integer"),
    ),
    ("log-level-enum", ["--set", "logLevel=verbose"], ("/logLevel", "must be one of")),
    (
        "config-item-without-spec",
        ["--set-json", 'config.peers=[{"name":"tor"}]'],
        ("/config/peers/0", "spec"),
    ),
    (
        "secret-names-not-list",
        ["--set", "speaker.secretNames=tor"],
        ("/speaker/secretNames", "want array"),
    ),
    ("image-digest-format", ["--set", "image.digest=latest"], ("/image/digest",)),
]


@pytest.mark.parametrize(("case", "args", "expected"), REJECTED, ids=[c[0] for c in REJECTED])
def test_schema_rejects(
    chart_tools: Tools, case: str, args: list[str], expected: tuple[str, ...]
) -> None:
    for command in (
        ["template", "exalb", str(CHART), "--namespace", NAMESPACE, *args],
        ["lint", "--strict", str(CHART), *args],
    ):
        proc = helm(chart_tools, *command, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"{case}: helm {command[0]} accepted {args}"
        assert SCHEMA_ERROR in out, f"{case}: {out}"
        for needle in expected:
            assert needle in out, f"{case}: {needle!r} not in {out!r}"


# --------------------------------------------------------------------------- structure


@pytest.fixture(scope="module")
def default_docs(chart_tools: Tools) -> list[dict[str, Any]]:
    return render(chart_tools)


def _caps(container: dict[str, Any]) -> tuple[list[str], list[str]]:
    caps = container["securityContext"].get("capabilities", {})
    return caps.get("drop", []), caps.get("add", [])


def test_controller_deployment(default_docs: list[dict[str, Any]]) -> None:
    dep = find(default_docs, "Deployment", "exalb-controller")
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 1
    assert pod["serviceAccountName"] == "exalb-controller"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (ctl,) = pod["containers"]
    sc = ctl["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert _caps(ctl) == (["ALL"], [])
    assert ctl["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert ctl["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert ctl["resources"]["requests"] and ctl["resources"]["limits"]
    assert "--leader-elect" in ctl["args"]


def test_speaker_daemonset(default_docs: list[dict[str, Any]]) -> None:
    ds = find(default_docs, "DaemonSet", "exalb-speaker")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["serviceAccountName"] == "exalb-speaker"
    assert "tolerations" not in pod  # control-plane nodes are opt-in
    by_name = containers(ds)
    assert list(by_name) == ["speaker", "exabgp", "garp"]
    for name, c in by_name.items():
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert c["resources"]["requests"] and c["resources"]["limits"], name
        assert "livenessProbe" in c or "readinessProbe" in c, name
    assert _caps(by_name["speaker"]) == (["ALL"], [])
    assert _caps(by_name["exabgp"]) == (["ALL"], [])
    assert _caps(by_name["garp"]) == (["ALL"], ["NET_RAW"])
    # no_new_privs everywhere but garp, whose NET_RAW is a file capability (values.yaml)
    assert [c["securityContext"]["allowPrivilegeEscalation"] for c in by_name.values()] == [
        False, False, True,
    ]  # fmt: skip
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["exabgp"] and "emptyDir" in volumes["l2"]
    # NODE_NAME from the downward API where a program needs it.
    for name in ("speaker", "garp"):
        env = {e["name"]: e for e in by_name[name]["env"]}
        assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    # Only the speaker container holds Kubernetes credentials.
    assert pod["automountServiceAccountToken"] is False
    sa = find(default_docs, "ServiceAccount", "exalb-speaker")
    assert sa["automountServiceAccountToken"] is False
    token_mounts = {
        name
        for name, c in by_name.items()
        for m in c["volumeMounts"]
        if m["mountPath"] == TOKEN_DIR
    }
    assert token_mounts == {"speaker"}
    sources = volumes["kube-api-access"]["projected"]["sources"]
    assert any("serviceAccountToken" in s for s in sources)


def test_speaker_pod_least_privilege(default_docs: list[dict[str, Any]]) -> None:
    """Each container its own non-root user; a volume per pair that talks (garp never sees
    exabgp.conf or ExaBGP's socket and FIFOs); the pod's group owns the shared volumes."""
    ds = find(default_docs, "DaemonSet", "exalb-speaker")
    pod = ds["spec"]["template"]["spec"]
    by_name = containers(ds)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"] != 0
    users = {n: c["securityContext"]["runAsUser"] for n, c in by_name.items()}
    assert all(u >= 1000 for u in users.values()) and len(set(users.values())) == 3, users
    mounts = {n: {m["name"]: m["mountPath"] for m in c["volumeMounts"]} for n, c in by_name.items()}
    assert mounts["speaker"] == {
        "exabgp": BGP_DIR, "l2": L2_DIR, "speaker-tmp": "/tmp", "kube-api-access": TOKEN_DIR,
    }  # fmt: skip
    assert mounts["exabgp"] == {"exabgp": BGP_DIR, "exabgp-tmp": "/tmp"}
    assert mounts["garp"] == {"l2": L2_DIR, "garp-key": "/etc/exalb/garp-key"}
    shared = {v for names in mounts.values() for v in names}
    for volume in shared:  # no volume is shared by all three
        assert sum(volume in m for m in mounts.values()) <= 2, volume
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["garp-key"]["secret"]["defaultMode"] == 0o440
    # /status and the probes on the node's loopback; only metrics on the node address
    spk = by_name["speaker"]
    ports = {p["name"]: p["containerPort"] for p in spk["ports"]}
    assert set(ports) == {"metrics", "status"}
    args = dict(a.removeprefix("--").split("=", 1) for a in spk["args"] if "=" in a)
    assert args["status-addr"] == f"127.0.0.1:{ports['status']}"
    for probe in ("livenessProbe", "readinessProbe"):
        assert spk[probe]["httpGet"]["host"] == "127.0.0.1"
        assert spk[probe]["httpGet"]["port"] == "status"


def _speaker_secret_rule(docs: list[dict[str, Any]]) -> list[str] | None:
    role = find(docs, "Role", "exalb-speaker")
    rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert len(rules) <= 1 and all(r["verbs"] == ["get"] for r in rules)
    return rules[0]["resourceNames"] if rules else None


def test_speaker_reads_only_the_secrets_the_config_names(chart_tools: Tools) -> None:
    """No Secret by default (not the garp key, not Helm's release Secrets); the passwordSecrets
    of config.peers and speaker.secretNames by name; the garp key is refused."""
    assert _speaker_secret_rule(render(chart_tools)) is None
    peers = (
        '[{"name": "a", "spec": {"myASN": 1, "peerASN": 2, "peerAddress": "198.18.0.1",'
        ' "passwordSecret": {"name": "pw-a"}}},'
        ' {"name": "b", "spec": {"myASN": 1, "peerASN": 2, "peerAddress": "198.18.0.2"}}]'
    )
    docs = render(chart_tools, "--set-json", f"config.peers={peers}",
                  "--set-json", 'speaker.secretNames=["pw-z", "pw-a"]')  # fmt: skip
    assert _speaker_secret_rule(docs) == ["pw-a", "pw-z"]
    proc = helm(
        chart_tools, "template", "exalb", str(CHART), "--namespace", NAMESPACE,
        "--set-json", 'speaker.secretNames=["exalb-garp-key"]', check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "is the garp probe key" in proc.stderr


def test_control_plane_tolerations_are_opt_in(chart_tools: Tools) -> None:
    docs = render(chart_tools, "--set", "speaker.tolerateControlPlane=true")
    pod = find(docs, "DaemonSet")["spec"]["template"]["spec"]
    keys = {t["key"] for t in pod["tolerations"]}
    assert keys == {"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"}
    assert "tolerations" not in find(docs, "Deployment")["spec"]["template"]["spec"]


def test_drain_settings_reach_the_speaker_and_a_short_grace_period_is_refused(
    chart_tools: Tools,
) -> None:
    docs = render(chart_tools, "--set", "speaker.drain.seconds=40",
                  "--set", "speaker.drain.onCordon=true",
                  "--set", "speaker.terminationGracePeriodSeconds=50")  # fmt: skip
    sargs = speaker_args(_argv(containers(find(docs, "DaemonSet"))["speaker"]))
    assert sargs.drain_seconds == 40 and sargs.drain_on_cordon
    proc = helm(chart_tools, "template", "exalb", str(CHART), "--set", "speaker.drain.seconds=40",
                check=False)  # fmt: skip
    assert proc.returncode != 0
    assert (
        "terminationGracePeriodSeconds (30) must be at least speaker.drain.seconds + 10 (50)"
        in (proc.stderr)
    )
    # keeping routes on exit (graceful restart) drains nothing: no constraint then
    render(
        chart_tools, "--set", "speaker.drain.seconds=40", "--set", "speaker.withdrawOnExit=false"
    )


def test_without_garp_the_speaker_pod_has_no_capability(chart_tools: Tools) -> None:
    docs = render(chart_tools, "-f", str(VALUES / "minimal.yaml"))
    ds = find(docs, "DaemonSet")
    assert list(containers(ds)) == ["speaker", "exabgp"]
    for c in containers(ds).values():
        assert _caps(c) == (["ALL"], [])
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert ds["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "l2" not in {v["name"] for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert {d["kind"] for d in docs} == {"Deployment", "DaemonSet"}  # rbac.create false


def test_config_objects_rendered_in_release_namespace(chart_tools: Tools) -> None:
    docs = render(chart_tools, "-f", str(VALUES / "full.yaml"))
    kinds = {d["kind"]: d for d in docs if d["apiVersion"].startswith("metallb.io/")}
    assert set(kinds) == {
        "IPAddressPool",
        "BGPPeer",
        "BGPAdvertisement",
        "L2Advertisement",
        "Community",
        "BFDProfile",
    }
    assert kinds["BGPPeer"]["apiVersion"] == "metallb.io/v1beta2"
    for d in kinds.values():
        assert d["metadata"]["namespace"] == NAMESPACE
    assert kinds["IPAddressPool"]["metadata"]["labels"]["zone"] == "a"
    assert kinds["IPAddressPool"]["spec"]["addresses"] == ["198.51.100.0/28", "2001:db8:100::/124"]


# --------------------------------------------------------------------------- the programs


def _substitute(arg: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)], arg)


def _env(container: dict[str, Any]) -> dict[str, str]:
    out = dict(DOWNWARD)
    for e in container.get("env", []):
        if "value" in e:
            out[e["name"]] = e["value"]
    return out


def _argv(container: dict[str, Any]) -> list[str]:
    env = _env(container)
    return [_substitute(a, env) for a in container.get("args", [])]


@pytest.mark.parametrize("name", ["default", "full", "minimal"])
def test_programs_accept_the_rendered_flags(
    chart_tools: Tools, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each container's command line goes through its program's own argparse, and the
    values that must agree between containers (paths in the emptyDir, ports) do."""
    for var in ("NODE_NAME", "KUBECONFIG", "POD_NAME"):
        monkeypatch.delenv(var, raising=False)
    docs = render(chart_tools, "-f", str(VALUES / f"{name}.yaml"))
    dep = find(docs, "Deployment")
    ds = find(docs, "DaemonSet")
    # -- controller
    (ctl,) = dep["spec"]["template"]["spec"]["containers"]
    assert ctl["command"] == ["exalb-controller"]
    args = controller_args(_argv(ctl))
    assert args.namespace == NAMESPACE
    assert args.metrics_addr == f"{DOWNWARD['POD_IP']}:{ctl['ports'][0]['containerPort']}"
    if args.leader_elect:
        roles = [
            d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-controller")
        ]
        if roles:
            rules = roles[0]["rules"]
            names = [r.get("resourceNames") for r in rules if "leases" in r["resources"]]
            assert [args.lease_name] in names, "lease RBAC must name the controller's lease"
    # -- speaker
    by_name = containers(ds)
    spk = by_name["speaker"]
    assert spk["command"] == ["exalb-speaker"]
    sargs = speaker_args(_argv(spk))
    assert sargs.node_name == DOWNWARD["NODE_NAME"]
    assert sargs.namespace == NAMESPACE
    assert Path(sargs.exabgp_socket).parent == Path(BGP_DIR)
    assert Path(sargs.exabgp_config).parent == Path(BGP_DIR)
    metrics_port = next(p["containerPort"] for p in spk["ports"] if p["name"] == "metrics")
    status_port = next(p["containerPort"] for p in spk["ports"] if p["name"] == "status")
    assert sargs.metrics_addr == f"{DOWNWARD['POD_IP']}:{metrics_port}"
    assert sargs.status_addr == f"127.0.0.1:{status_port}"
    assert sargs.lb_class == (args.lb_class or None)
    # -- exabgp: the launcher waits for exactly the file the speaker renders
    exa = by_name["exabgp"]
    assert exa["command"] == ["exalb-exabgp"]
    launch = dict(a.removeprefix("--").partition("=")[::2] for a in exa["args"])
    assert launch["config"] == sargs.exabgp_config
    assert Path(launch["root"]).parent == Path(BGP_DIR)
    socket_probe = exa["readinessProbe"]["exec"]["command"]
    assert socket_probe == ["test", "-S", sargs.exabgp_socket]
    # Run the real launcher on a private copy of the paths: argparse accepts the flags (exit
    # 2 would be a usage error), it creates the CLI FIFOs if asked and reports the missing
    # config.
    remapped = [a.replace(BGP_DIR, str(tmp_path)) for a in exa["args"]]
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("exalb-exabgp")), *remapped, "--wait", "0.05"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "config_never_appeared" in proc.stderr
    root = Path(launch["root"].replace(BGP_DIR, str(tmp_path)))
    assert (root / "run" / f"{launch['pipename']}.in").is_fifo() == ("--cli" in exa["args"])
    # ExaBGP is signalled only after the speaker drained: its preStop waits for the done file
    # the speaker writes, for longer than the drain, within the pod's grace period
    pre_stop = exa["lifecycle"]["preStop"]["exec"]["command"]
    waits = dict(a.removeprefix("--").split("=", 1) for a in pre_stop[1:])
    assert pre_stop[0] == "exalb-exabgp" and waits["wait-done"] == sargs.done_file
    assert Path(sargs.done_file).parent == Path(BGP_DIR)
    grace = ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert float(waits["wait"]) <= grace
    if sargs.withdraw_on_exit:
        assert sargs.drain_seconds < float(waits["wait"])
    # -- garp (without it the speaker runs no L2: nobody would read the state)
    if "garp" not in by_name:
        assert sargs.l2_state is None
    if "garp" in by_name:
        garp = by_name["garp"]
        assert garp["command"] == ["exalb-garp"]
        gargs = garp_args(_argv(garp))
        assert Path(gargs.state).parent == Path(L2_DIR)
        assert sargs.l2_state == gargs.state, "the speaker writes what the sidecar reads"
        assert gargs.status is None  # default <state>.status: where the speaker reads it
        assert gargs.node == DOWNWARD["NODE_NAME"]
        ports = {p["name"]: p["containerPort"] for p in garp["ports"]}
        assert gargs.metrics_port == ports["garp-metrics"]
        assert gargs.probe_port == ports["garp-probe"]
        assert gargs.metrics_addr == DOWNWARD["POD_IP"]
        # Host network: no two listeners of the pod may share a port.
        assert len({gargs.metrics_port, metrics_port, status_port}) == 3


def test_notes_say_what_to_do_next(chart_tools: Tools) -> None:
    def notes(*args: str) -> str:
        out = helm(
            chart_tools, "install", "exalb", str(CHART), "--namespace", NAMESPACE,
            "--dry-run=client", *args,
        ).stdout  # fmt: skip
        return out.split("NOTES:", 1)[1]

    fresh = notes()
    assert "kubectl exalb status" in fresh
    assert "kind: IPAddressPool" in fresh  # how to add a pool
    assert f"namespace: {NAMESPACE}" in fresh
    assert "port-forward" in fresh and "get, create pods/portforward" in fresh
    configured = notes("-f", str(VALUES / "full.yaml"))
    assert "kind: IPAddressPool" not in configured
    assert "5 metallb.io object(s)" in configured
