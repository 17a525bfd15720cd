"""Evaluations per second of a 10-node expression: compiled closures vs an AST interpreter.

    python bench/expressions.py [--quick] [--n N] [--rounds R]

The compiled side is ``compile_expression(...)(values)``, the form the record pipeline
will call. The baseline walks the same checked syntax tree on every evaluation (an
``isinstance`` dispatch per node, the same NULL rules and Decimal context), which is
what an expression engine without a compile step does. Both are checked to agree on
varied inputs (NULLs included) before timing; the sides alternate every round.
Ends with ``RESULT expressions ratio=…`` (compiled ÷ interpreted evaluations/s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trellis.platform.expressions import compile_expression
from trellis.platform.expressions.python import CONTEXT, to_decimal
from trellis.platform.expressions.syntax import (
    Binary,
    Literal,
    Node,
    Unary,
    children,
)
from trellis.platform.expressions.syntax import (
    Path as FieldPath,
)

EXPRESSION = "quantity * (unit_price - discount) > 100 AND NOT rush"
LINE = {
    "x-name": "order_line",
    "properties": {
        "quantity": {"x-type": "integer"},
        "unit_price": {"x-type": "currency"},
        "discount": {"x-type": "currency"},
        "rush": {"x-type": "boolean"},
    },
}


def interpret(node: Node, values: dict[str, Any]) -> Any:
    """The baseline: evaluate ``node`` by walking the tree (SQL's NULL rules, Decimal)."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, FieldPath):
        value = values.get(node.parts[0])
        return to_decimal(value) if node.type == "decimal" else value
    if isinstance(node, Unary):
        operand = interpret(node.operand, values)
        if operand is None:
            return None
        return (not operand) if node.op == "NOT" else -operand
    if isinstance(node, Binary):
        op = node.op
        if op in ("AND", "OR"):
            a = interpret(node.left, values)
            stop = op == "OR"
            if a is stop:
                return stop
            b = interpret(node.right, values)
            if b is stop:
                return stop
            return None if a is None or b is None else not stop
        a = interpret(node.left, values)
        if a is None:
            return None
        b = interpret(node.right, values)
        if b is None:
            return None
        if op == "+":
            return a + b if node.type == "integer" else CONTEXT.add(Decimal(a), Decimal(b))
        if op == "-":
            return a - b if node.type == "integer" else CONTEXT.subtract(Decimal(a), Decimal(b))
        if op == "*":
            return a * b if node.type == "integer" else CONTEXT.multiply(Decimal(a), Decimal(b))
        if op == ">":
            return a > b
        if op == "<":
            return a < b
        if op == "=":
            return a == b
        raise NotImplementedError(op)
    raise NotImplementedError(type(node).__name__)


def count_nodes(node: Node) -> int:
    return 1 + sum(count_nodes(child) for child in children(node))


def inputs() -> list[dict[str, Any]]:
    rows = []
    for i in range(200):
        rows.append(
            {
                "quantity": None if i % 17 == 0 else i % 9,
                "unit_price": Decimal(f"{i % 50}.{i % 100:02d}"),
                "discount": None if i % 13 == 0 else Decimal(i % 7),
                "rush": i % 5 == 0,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None, help="evaluations per side per round")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    n = args.n or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (3 if args.quick else 5)

    compiled = compile_expression(EXPRESSION, LINE)
    tree = compiled.checked.tree
    nodes = count_nodes(tree)
    print(f"expression: {EXPRESSION}  ({nodes} nodes, result {compiled.type})")
    rows = inputs()
    for row in rows:
        if compiled(row) != interpret(tree, row):
            print(f"the two sides disagree on {row}", file=sys.stderr)
            return 1
    print(f"both sides agree on {len(rows)} inputs (NULLs included)")

    def time_compiled() -> float:
        started = time.perf_counter()
        for i in range(n):
            compiled(rows[i % 200])
        return n / (time.perf_counter() - started)

    def time_interpreted() -> float:
        started = time.perf_counter()
        for i in range(n):
            interpret(tree, rows[i % 200])
        return n / (time.perf_counter() - started)

    time_compiled(), time_interpreted()  # warm-up
    ratios, fast, slow = [], [], []
    for r in range(rounds):
        sides = (
            [time_compiled, time_interpreted] if r % 2 == 0 else [time_interpreted, time_compiled]
        )
        results = {side.__name__: side() for side in sides}
        fast.append(results["time_compiled"])
        slow.append(results["time_interpreted"])
        ratios.append(fast[-1] / slow[-1])
        print(
            f"round {r + 1}: compiled {fast[-1]:,.0f}/s  interpreted {slow[-1]:,.0f}/s"
            f"  ratio {ratios[-1]:.2f}"
        )
    print(
        f"RESULT expressions ratio={statistics.median(ratios):.2f}"
        f" compiled_per_s={statistics.median(fast):.0f}"
        f" interpreted_per_s={statistics.median(slow):.0f} nodes={nodes} n={n}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
