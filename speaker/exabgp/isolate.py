"""Which neighbors of a refused ExaBGP config are to blame, found by validating parts of it.

Why: ``exabgp validate`` judges a file as a whole, and ExaBGP refuses a whole file for one
bad neighbor. The speaker used to keep the old file then, so one peer nobody could fix in
time froze every peer of the node: a good new peer was never added, a removed one never
went away. Finding the culprits lets the speaker apply the rest and report only them.

How: the file's head (the API process) is validated alone first (if it is refused, no
neighbor is to blame); then the neighbors are halved, each half validated with the head,
and only a refused half is halved again. One bad neighbor among N costs about 2·log2(N)
validations (a validation is a process start, about a second), k of them O(k·log N).
Neighbors that are only refused *together* (no half refused on its own) are not blamed:
the caller then keeps the old config, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from speaker.exabgp.render import Neighbor, Rendered

#: Validates one config text: ``None`` when valid, else ExaBGP's complaint
#: (:func:`speaker.exabgp.driver.scratch_validator`).
TextValidator = Callable[[str], Awaitable[str | None]]


async def refused_neighbors(
    rendered: Rendered, validate: TextValidator, complaint: str = ""
) -> dict[str, str]:
    """Peer name → ExaBGP's complaint, for the neighbors of ``rendered`` (a config ExaBGP
    refused with ``complaint``) that it refuses on their own."""
    if not rendered.neighbors or await validate(rendered.head) is not None:
        return {}
    refused: dict[str, str] = {}
    await _search(rendered, list(rendered.neighbors), complaint, validate, refused)
    return refused


async def _search(
    rendered: Rendered,
    group: Sequence[Neighbor],
    complaint: str,
    validate: TextValidator,
    refused: dict[str, str],
) -> None:
    """``group`` (with the head) is refused with ``complaint``: blame its parts."""
    if len(group) == 1:
        refused[group[0].peer_name] = summary(complaint)
        return
    middle = len(group) // 2
    for half in (group[:middle], group[middle:]):
        problem = await validate(rendered.with_neighbors(half))
        if problem is not None:
            await _search(rendered, half, problem, validate, refused)


def summary(complaint: str, limit: int = 300) -> str:
    """ExaBGP's complaint without its log prefixes and file names: the lines after the last
    ``error:`` line (or the last lines), joined, bounded."""
    lines = [line.strip() for line in complaint.splitlines()]
    last_error = max((i for i, line in enumerate(lines) if line.startswith("error:")), default=-1)
    tail = [line for line in lines[last_error + 1 :] if line] or [x for x in lines if x][-2:]
    text = "; ".join(tail) or "refused"
    return text if len(text) <= limit else text[: limit - 3] + "..."
