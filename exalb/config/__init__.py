"""The config model both programs share, and its parsers (MetalLB CRDs, legacy ConfigMap).

Pure: no I/O beyond reading files the caller names, no ``kubernetes`` import.

Nothing is imported here on purpose: the garp sidecar needs only :mod:`exalb.config.model`
(its address types), and importing the package must not load every parser and PyYAML into
a process that never parses a config (import the parsers from their modules:
:mod:`exalb.config.documents`, :mod:`exalb.config.crd`, :mod:`exalb.config.legacy`).
"""
