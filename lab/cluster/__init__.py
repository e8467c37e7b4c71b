"""A real Kubernetes cluster in the lab's network namespaces (topologies with a
``controlplane`` node, e.g. ``containerlab/k8s-bgp``).

Why: exalb is installed by users as an image and a Helm chart onto nodes that run kubelet,
containerd and kube-proxy. This package makes the lab exactly that: etcd and the Kubernetes
control plane in the ``controlplane`` node's namespace, and on every ``node`` containerd +
kubelet + kube-proxy with real pods from images built here (``scripts/image.sh``). The host
reaches the apiserver only through a relay on its loopback (``lab.nsnet``); nothing is added
to the host's network namespace.

Modules: ``plan`` (what the topology asks for, pure), ``configs`` (the programs' config
files, pure), ``pki`` (certificates), ``hostguard`` (the kernel settings kubelet changes, and
shared host paths, restored by the last cluster that leaves), ``cleanup`` (pods, mounts and
cgroups a run leaves behind), ``images``, ``cluster`` (bring-up and the handle tests use).
"""
