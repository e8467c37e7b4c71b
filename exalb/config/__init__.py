"""The config model both programs share, and its parsers (MetalLB CRDs, legacy ConfigMap).

Pure: no I/O beyond reading files the caller names, no ``kubernetes`` import.
"""

from exalb.config.crd import parse_objects
from exalb.config.documents import parse_documents, parse_files
from exalb.config.legacy import parse_legacy_text
from exalb.config.model import Config
from exalb.config.result import ParseResult

__all__ = [
    "Config",
    "ParseResult",
    "parse_documents",
    "parse_files",
    "parse_legacy_text",
    "parse_objects",
]
