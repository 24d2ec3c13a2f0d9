"""How a diagram marks what a state means: tier colours, role badges, guards, the legend.

One palette for every lifecycle: a colour says how often a state runs (its *tier*, see
:mod:`statetrainer._structure`), so a per-item state is the same blue in train, evaluate
and test. Roles are drawn on the state: a small second line names the roles and feed
bindings (``epoch opens``, ``takes train``), a double border marks a resumable state, a
grey region holds the states that run without grad. :func:`legend_label` explains all of
it in a table drawn beside the graph.

Torch-free.
"""

from __future__ import annotations

import html

from statetrainer._structure import TIERS
from statetrainer.spec import CONTROL_GUARDS, Edge, Lifecycle, State

#: The colour scheme of every rendered diagram, and each tier's colour index in it.
COLORSCHEME = "set36"
TIER_COLOUR = {"entry": 1, "run": 2, "epoch": 4, "item": 5}
#: Hex values of :data:`TIER_COLOUR` (Brewer set3), for Mermaid and HTML.
TIER_HEX = {"entry": "#8dd3c7", "run": "#ffffb3", "epoch": "#fb8072", "item": "#80b1d3"}

GREY = "#8c8c8c"
ROLE_TEXT_COLOUR = "#4d4d4d"
#: The current state: a red border (as in the web view).
CURRENT = "#d62728"
#: The failing state: filled red, dark border, white text (as in the web view).
FAILED_FILL, FAILED_BORDER = "#d62728", "#67000d"
NO_GRAD_FILL, NO_GRAD_BORDER = "#ededed", "#9a9a9a"
LEGEND_NODE = "__legend__"

#: The words a state's second line uses for each role (``resumable`` is a double border).
ROLE_WORDS = {"epoch_start": "epoch opens", "epoch_end": "epoch closes", "batch_end": "batch end",
              "no_grad": "no grad"}


def role_words(state: State) -> list[str]:
    """The small second line of ``state``: its roles (but ``resumable``) and feed bindings."""
    words = [ROLE_WORDS[r] for r in ("epoch_start", "epoch_end", "batch_end", "no_grad") if r in state.roles]
    if state.opens:
        words.append(f"opens {state.opens}")
    if state.takes:
        words.append(f"takes {state.takes}")
    if state.item and state.item != state.takes:
        words.append(f"per {state.item} item" if state.compound else f"gets {state.item} item")
    if state.closes:
        words.append(f"closes {state.closes}")
    return words


def guard_text(edges: list[Edge], choice_fallback: bool = False) -> str:
    """``[g1 and g2]``: the guards every edge of a drawn edge shares (control requests aside)."""
    if not edges:
        return ""
    common = [g for g in edges[0].guard if g not in CONTROL_GUARDS and all(g in e.guard for e in edges)]
    if common:
        return "[" + " and ".join(common) + "]"
    return "[else]" if choice_fallback else ""


def edge_label(label: str | None, guard: str) -> str:
    """A drawn edge's label: the seed's loop label and/or the guard, one per line."""
    return "\\n".join(part for part in (label or "", guard) if part)


def node_label(name: str, words: list[str], callbacks: list[str], failed: bool) -> str | None:
    """An HTML-like label: the name, the role line, the callbacks; ``None`` when the name is enough."""
    if not words and not callbacks:
        return None
    colour = "#ffffff" if failed else ROLE_TEXT_COLOUR
    lines = [html.escape(name, quote=False)]
    if words:
        lines.append(f'<FONT POINT-SIZE="7" COLOR="{colour}">{html.escape(" · ".join(words), quote=False)}</FONT>')
    lines += [html.escape(f"+ {c}", quote=False) for c in callbacks]
    return "<" + "<BR/>".join(lines) + ">"


def tier_fill(tier: str) -> int:
    """The colour index of ``tier`` in :data:`COLORSCHEME`."""
    return TIER_COLOUR[tier]


# -- the legend --------------------------------------------------------------------------


def _row(key: str, text: str, key_attrs: str = ' BORDER="0"') -> str:
    """One legend entry: a key cell (a swatch when it has a colour) and its meaning."""
    return f'<TD{key_attrs} WIDTH="36">{key}</TD><TD ALIGN="LEFT">{html.escape(text, quote=False)}</TD>'


def _swatch(attrs: str) -> str:
    return f' BORDER="1"{attrs}'


def legend_rows(spec: Lifecycle, shown: list[str], tiers: dict[str, str], marks: dict[str, bool]) -> list[str]:
    """The legend's entries for what this diagram draws (nothing it does not draw is explained)."""
    rows = []
    for tier, meaning in TIERS.items():
        if any(tiers[n] == tier for n in shown):
            rows.append(_row("", meaning, _swatch(f' BGCOLOR="/{COLORSCHEME}/{TIER_COLOUR[tier]}"')))
    rows.append(_row("───", "an edge of the seed's diagram"))
    if marks.get("extensions"):
        rows.append(_row(f'<FONT COLOR="{GREY}">- - -</FONT>', "a case the seed leaves implicit (label: why)"))
    if marks.get("guards"):
        rows.append(_row("[guard]", "taken when the guard is true (else the unlabelled edge)"))
    if marks.get("requests"):
        rows.append(_row(f'<FONT COLOR="{GREY}">stop()</FONT>', "a request, from any state it can stop or skip"))
    states = [spec.state(n) for n in shown]
    if any(s.has("resumable") for s in states):
        rows.append(_row('<TABLE BORDER="1" CELLBORDER="0" CELLPADDING="4"><TR><TD></TD></TR></TABLE>',
                         "double border: resumable (a checkpoint here resumes exactly)", _swatch("")))
    if any(role_words(s) for s in states):
        rows.append(_row(f'<FONT POINT-SIZE="7" COLOR="{ROLE_TEXT_COLOUR}">takes x</FONT>',
                         "roles: epoch opens/closes, batch end; a feed opened, taken, closed"))
    if marks.get("no_grad"):
        rows.append(_row("", "no grad: runs under torch.no_grad()", _swatch(f' BGCOLOR="{NO_GRAD_FILL}"')))
    if marks.get("current"):
        rows.append(_row("", "the current state", f' COLOR="{CURRENT}" BORDER="3"'))
    if marks.get("failed"):
        rows.append(_row("", "failed here", f' BGCOLOR="{FAILED_FILL}" COLOR="{FAILED_BORDER}" BORDER="3"'))
    if marks.get("last"):
        rows.append(_row(f'<FONT COLOR="{CURRENT}">━━━</FONT>', "the last transition taken"))
    return rows


def legend_label(entries: list[str], columns: int = 2) -> str:
    """The legend as one HTML-like table label, its entries in ``columns`` columns."""
    per_column = -(-len(entries) // columns)
    rows = []
    for i in range(per_column):
        cells = [entries[i + c * per_column] for c in range(columns) if i + c * per_column < len(entries)]
        rows.append("<TR>" + "".join(cells) + "</TR>")
    head = f'<TR><TD COLSPAN="{2 * columns}" ALIGN="LEFT"><B>legend</B></TD></TR>'
    return ('<<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="3" CELLPADDING="2" COLOR="#bbbbbb">'
            + head + "".join(rows) + "</TABLE>>")
