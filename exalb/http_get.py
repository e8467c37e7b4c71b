"""One HTTP GET on a connection whose socket is made elsewhere (a unix socket, one end of a
port-forward): ``http.client`` speaks HTTP, the subclass only says how to connect."""

from __future__ import annotations

import http.client


def get_once(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    """``GET path`` on ``conn``; its status and body. The connection is closed after."""
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
