"""A workflow's states and transitions drawn as SVG on the server: a small layered layout.

States are put in columns by their distance from the initial state (a breadth-first walk
over the transitions; states it never reaches go in a last column), stacked in document
order within a column; cancelled states go in a row below, under the states leading
there. Each transition is a line with an arrow and its label; a move back to an earlier
column is a curve below the boxes, so it does not hide the forward ones. Every text is
escaped; the drawing has no script.
"""

from __future__ import annotations

from collections import deque

from markupsafe import Markup, escape

from trellis.platform.workflow import Category, Transition, Workflow

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 150, 44, 100, 36, 20
COLOURS = {
    "draft": ("#eef1f4", "#52606d"),
    "in_progress": ("#e3f2fd", "#1565c0"),
    "done": ("#e6f4ea", "#1e7b34"),
    "cancelled": ("#fdecea", "#b3261e"),
}


def layers(workflow: Workflow) -> dict[str, int]:
    """Each state's column: its distance in transitions from the initial state."""
    column = {workflow.initial_name: 0}
    queue = deque([workflow.initial_name])
    while queue:
        here = queue.popleft()
        for transition in workflow.transitions_from(here):
            if transition.target not in column:
                column[transition.target] = column[here] + 1
                queue.append(transition.target)
    last = max(column.values(), default=0) + 1
    for state in workflow.states:
        column.setdefault(state.name, last)
    return column


def render_svg(workflow: Workflow, language: str = "en", approval_mark: str = "approval") -> Markup:
    """The diagram as an ``<svg>`` element (labels in ``language``, English otherwise). A
    transition that submits for approval is drawn dashed, with ``approval_mark`` (the
    word in the reader's language) in a badge after its label."""
    column = layers(workflow)
    # Cancelled states are reached from many: they sit in a row of their own below the
    # main line, under the middle of the states that lead to them.
    ends = [s.name for s in workflow.states if s.category is Category.CANCELLED]
    for end in ends:
        sources = [
            column[source]
            for t in workflow.transitions
            if t.target == end
            for source in t.sources
            if source not in ends
        ]
        if sources:
            column[end] = round(sum(sources) / len(sources))
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for state in workflow.states:
        if state.name in ends:
            continue
        col = column[state.name]
        row = rows.get(col, 0)
        rows[col] = row + 1
        place[state.name] = (PAD + col * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y))
    bottom = max(rows.values(), default=0) + 1  # one empty row for the curves of moves back
    for end in ends:
        place[end] = (PAD + column[end] * (BOX_W + GAP_X), PAD + bottom * (BOX_H + GAP_Y))
    rows[-1] = bottom + 1
    width = PAD * 2 + (max(column.values(), default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + max(rows.values(), default=1) * (BOX_H + GAP_Y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="workflow-diagram" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(_pick(workflow.label, language))}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#52606d"/></marker></defs>',
    ]
    for transition in workflow.transitions:
        for source in transition.sources:
            if source in place and transition.target in place:
                parts.append(
                    _edge(
                        place[source], place[transition.target], transition, language,
                        approval_mark,
                    )
                )  # fmt: skip
    for state in workflow.states:
        x, y = place[state.name]
        fill, stroke = COLOURS.get(str(state.category), COLOURS["draft"])
        width_line = 3 if state.name == workflow.initial_name else 1.5
        parts.append(
            f'<g class="state" data-state="{escape(state.name)}">'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{width_line}"/>'
            f'<text x="{x + BOX_W / 2}" y="{y + BOX_H / 2 + 5}" text-anchor="middle" '
            f'font-size="13" fill="{stroke}">{escape(_pick(state.label, language))}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _edge(
    start: tuple[int, int],
    end: tuple[int, int],
    transition: Transition,
    language: str,
    approval_mark: str = "approval",
) -> str:
    (x1, y1), (x2, y2) = start, end
    ax: float
    ay: float
    bx: float
    by: float
    label = escape(_pick(transition.label, language))
    if y2 > y1 + BOX_H:  # down to a cancelled state: bottom edge to top edge
        ax, ay, bx, by = x1 + BOX_W / 2, y1 + BOX_H, x2 + BOX_W / 2, y2
        path = f"M{ax},{ay} L{bx},{by}"
        tx, ty = (ax + bx) / 2, (ay + by) / 2
    elif x2 > x1:  # forward: right edge to left edge
        ax, ay, bx, by = x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2
        path = f"M{ax},{ay} L{bx},{by}"
        tx, ty = (ax + bx) / 2, (ay + by) / 2 - 6
    else:  # back or within a column: a curve below the boxes
        ax, ay, bx, by = x1 + BOX_W / 2, y1 + BOX_H, x2 + BOX_W / 2, y2 + BOX_H
        dip = max(ay, by) + 40
        path = f"M{ax},{ay} C{ax},{dip} {bx},{dip} {bx},{by}"
        tx, ty = (ax + bx) / 2, dip - 6
    if transition.approval is None:
        return (
            f'<g class="transition" data-transition="{escape(transition.name)}">'
            f'<path d="{path}" fill="none" stroke="#52606d" stroke-width="1.2" '
            f'marker-end="url(#arrow)"/>'
            f'<text x="{tx}" y="{ty}" text-anchor="middle" font-size="11" fill="#323f4b">'
            f"{label}</text></g>"
        )
    # Submits for approval: a dashed edge, and the label followed by a small badge.
    return (
        f'<g class="transition approval" data-transition="{escape(transition.name)}" '
        f'data-approval="{len(transition.approval.steps)}">'
        f'<path d="{path}" fill="none" stroke="#2f80ed" stroke-width="1.6" '
        f'stroke-dasharray="6 4" marker-end="url(#arrow)"/>'
        f'<text x="{tx}" y="{ty}" text-anchor="middle" font-size="11" fill="#323f4b">'
        f'{label} <tspan class="approval-badge" fill="#2f80ed" font-weight="bold">'
        f"[{escape(approval_mark)}]</tspan></text></g>"
    )


def _pick(label: dict[str, str], language: str) -> str:
    return label.get(language) or label.get("en") or next(iter(label.values()), "")
