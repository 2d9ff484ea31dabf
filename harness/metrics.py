"""A leaderboard column is declared once, where its value is computed.

``Column`` carries the column's name, its direction (``higher_is_better``, as
in torchmetrics: ``True``, ``False``, or ``None`` for a spec field or a
reference level that is neither) and its one-line definition. The leaderboard
CSV, ``results/README.md``'s column table and the report's tooltips are all
generated from these declarations:

- the cell's spec and the core measurements are declared in ``harness.measure``;
- a plugin (an attack, a watermark) adds its own columns in its class attribute
  ``columns``, next to the code that computes them.

A record that carries a metric nobody declared is refused when it is written
(``check_declared``), so a column is never dropped silently.

>>> col = Column("dice_attacked", True, "Mean per-image Dice of the attacked model.")
>>> col.direction
'higher'
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass(frozen=True)
class Column:
    name: str
    higher_is_better: bool | None
    definition: str

    @property
    def direction(self) -> str:
        """``higher``, ``lower`` or ``-``: the word used in results/README.md and the report."""
        return {True: "higher", False: "lower", None: "-"}[self.higher_is_better]


def merge(groups) -> list[Column]:
    """Columns of several declarations, in order; one name declared twice, differently, raises."""
    out: dict[str, Column] = {}
    for group in groups:
        for column in group:
            known = out.get(column.name)
            if known is not None and known != column:
                raise ValueError(f"column {column.name!r} is declared twice, differently: {known} vs {column}")
            out[column.name] = column
    return list(out.values())


def check_declared(metrics: dict, columns: list[Column], where: str) -> None:
    """Refuse a metric that no column declares (it would never reach the leaderboard)."""
    names = {c.name for c in columns}
    unknown = sorted(k for k in metrics if k not in names)
    if unknown:
        raise HarnessError(f"{where} computed undeclared metric(s) {', '.join(unknown)}: declare each as a "
                           "harness.metrics.Column where it is computed (a plugin: in its `columns`)")
