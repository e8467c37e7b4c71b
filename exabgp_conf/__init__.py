"""The ExaBGP configuration templates and environment the speaker really uses.

Why files and not f-strings in the renderer: what exalb asks of ExaBGP should be readable in
ExaBGP's own syntax, in one place, by someone who knows ExaBGP and not Python. The files are
packaged with exalb (the image carries them) and read once at import:

* ``exabgp.env``: the ExaBGP environment, passed as ``--env-file`` by the launcher
  (:mod:`speaker.exabgp.launch`), with the reasons for each value;
* ``exabgp.conf``: the head of the rendered file (the API ``process`` that runs the bridge);
* ``neighbor.conf``: one neighbor block per BGPPeer of the node.

Template syntax (filled by :func:`speaker.exabgp.render.fill`): ``${name}`` is replaced by a
value; a line that starts with ``?name`` is kept (without the marker) only when ``name`` has
a non-empty value, which is how optional settings stay visible in the template.
"""

from __future__ import annotations

from importlib.resources import files

ENV_FILE = "exabgp.env"
CONFIG_HEAD = "exabgp.conf"
NEIGHBOR = "neighbor.conf"


def path(name: str) -> str:
    """Filesystem path of a packaged file (for ``exabgp --env-file``)."""
    return str(files(__name__).joinpath(name))


def read(name: str) -> str:
    """The text of a packaged template or environment file."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")
