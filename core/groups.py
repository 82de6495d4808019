"""Group names as routing sees them.

Channels name the groups that may use them (``Channel.groups``); the rows
(with their price multipliers) are billing's ``Group``. Billing registers
how to look names up when it starts (billing/apps.py), so channels_app can
check names without importing billing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

_known: Callable[[list[str]], set[str]] | None = None


def register(known: Callable[[list[str]], set[str]]) -> None:
    """``known(names)`` → those of ``names`` that are existing groups."""
    global _known
    _known = known


def unknown(names: Iterable[str]) -> list[str]:
    """The names that are no group, in the order given."""
    wanted = list(dict.fromkeys(names))
    if _known is None:
        raise RuntimeError("no group directory registered (is the billing app installed?)")
    found = _known(wanted)
    return [name for name in wanted if name not in found]
