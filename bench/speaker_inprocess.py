"""The speaker's decision + driver path in its own process, fed by a fixture instead of the API.

Used by ``bench/bgp.py`` for the 10,000-route figures: creating 10,000 Services and
EndpointSlices in a kube-apiserver on 2 cores takes minutes and would measure the apiserver.
This process runs exactly the speaker's code from :class:`speaker.cluster_store.ClusterStore` on
(informer handlers fed with the same JSON the apiserver would send, view reduction, the debounced
recompute, ``decide``, rendering, the ExaBGP driver and bridge), only the informers are replaced by
a fixture. Being its own process, its RSS is the speaker's RSS.

Protocol (line based, stdin/stdout):

1. starts with the config objects and this node, renders the ExaBGP config (the launcher
   then starts ExaBGP), prints ``{"ready": ...}`` once the bridge is connected and the
   config applied;
2. on the line ``go <n>`` it hands ``n`` Services (198.19.0.0/16, one /32 each, Cluster
   policy, one ready endpoint) and their EndpointSlices to the store at once, prints
   ``{"t0": <monotonic>}`` and notifies the speaker; prints ``{"acked": <monotonic>}`` when
   the driver has every route acked by ExaBGP;
3. on ``quit`` (or stdin EOF) it exits without withdrawing (ExaBGP keeps the routes).

Usage: ``python bench/speaker_inprocess.py <spec.json>`` inside the node's namespace.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
import time
from pathlib import Path
from typing import Any

from exalb.obs import configure_logging
from speaker.app import Settings, Speaker
from speaker.bgp import BGPAnnouncer
from speaker.cluster_store import ClusterStore
from speaker.exabgp.connection import unix_connector
from speaker.exabgp.driver import Driver, exabgp_validate


def service(i: int, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "bench", "name": f"s{i}", "resourceVersion": str(i)},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "protocol": "TCP"}],
            "clusterIPs": [f"10.96.{i // 250}.{i % 250 + 1}"],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
    }


def endpoint_slice(i: int, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": "bench",
            "name": f"s{i}-abc",
            "labels": {"kubernetes.io/service-name": f"s{i}"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.0.1"], "nodeName": node, "conditions": {"ready": True}}
        ],
    }


def emit(**kw: Any) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


async def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    node = spec["node"]
    world = ClusterStore(node["metadata"]["name"])
    driver = Driver(
        unix_connector(spec["socket"]),
        config_path=Path(spec["config"]),
        validate=exabgp_validate(spec["exabgp"]),
        reconnect_delay=0.05,
        command_timeout=120.0,
    )
    settings = Settings(node_name=node["metadata"]["name"], namespace=spec["namespace"])
    bgp = BGPAnnouncer(driver, bridge_argv=spec["bridge"], config_path=Path(spec["config"]))
    sp = Speaker(settings, world, bgp)
    world.on_change = sp.notify
    for i, obj in enumerate(spec["config_objects"]):
        world.on_config("added", f"{spec['namespace']}/cfg{i}", None, obj)
    world.on_node("added", node["metadata"]["name"], None, node)
    runner = asyncio.create_task(sp.run())
    await asyncio.sleep(0)
    sp.notify()
    while not sp.bgp.ready():
        await asyncio.sleep(0.01)
    await driver.wait_converged(60)
    emit(ready=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    base = ipaddress.ip_address(spec["first_ip"])
    while line := (await reader.readline()).decode().strip():
        if line.startswith("go"):
            n = int(line.split()[1])
            world.on_change = lambda _k: None  # one notify after the whole batch
            name = node["metadata"]["name"]
            for i in range(n):
                world.on_service("added", f"bench/s{i}", None, service(i, str(base + i)))
                world.on_endpoint_slice("added", f"bench/s{i}-abc", None, endpoint_slice(i, name))
            world.on_change = sp.notify
            t0 = time.monotonic()
            emit(t0=t0)
            sp.notify()
            await asyncio.sleep(settings.debounce + 0.01)
            while bgp.plan is None or len(bgp.plan.announcements.routes) < n:
                await asyncio.sleep(0.005)
            await driver.wait_converged(300)
            assert sp.computed is not None
            emit(acked=time.monotonic(), decide_seconds=sp.computed.seconds)
        elif line == "quit":
            break
    await sp.stop(withdraw=False)
    runner.cancel()


if __name__ == "__main__":
    configure_logging("warning")
    asyncio.run(main(sys.argv[1]))
