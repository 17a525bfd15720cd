"""The expression language's tokens, syntax tree and parser (docs/expressions.md).

A hand-written tokenizer and recursive-descent parser: no ``eval``, no ``ast``. Every
limit in trellis/defaults.py is checked before the work it bounds, so hostile input
(10,000 parentheses, a megabyte of text) is refused in microseconds with a position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from trellis import defaults
from trellis.platform.messages import N_, Message

KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "TRUE", "FALSE", "NULL", "CASE", "WHEN", "THEN", "ELSE", "END"}
)
COMPARISONS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
_TWO_CHAR = frozenset({"<=", ">=", "<>", "!="})
_ONE_CHAR = frozenset("+-*/=<>(),.")

END_OF_EXPRESSION = N_("the end of the expression")


class ExpressionError(ValueError):
    """An expression refused: what is wrong, and where (0-based offset, 1-based line/column)."""

    def __init__(self, message: Message, offset: int, text: str = "") -> None:
        """``message`` about the character at ``offset`` of ``text``."""
        offset = max(0, min(offset, len(text)))
        before = text[:offset]
        self.message = message
        self.offset = offset
        self.line = before.count("\n") + 1
        self.column = offset - (before.rfind("\n") + 1) + 1
        super().__init__(str(self))

    def __str__(self) -> str:
        """The English message with its line and column."""
        return f"{self.message} (line {self.line}, column {self.column})"

    def as_detail(self) -> dict[str, Any]:
        """The error as an API detail: message, offset, line and column."""
        return {
            "message": self.message,
            "offset": self.offset,
            "line": self.line,
            "column": self.column,
        }


# --- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``kind`` is number, string, name, keyword, var, op or end."""

    kind: str
    text: str
    value: Any
    offset: int


def _found(token: Token) -> Message | str:
    if token.kind == "end":
        return END_OF_EXPRESSION
    return repr(token.text if len(token.text) <= 20 else token.text[:19] + "…")


def tokenize(text: str) -> list[Token]:
    """``text`` as tokens, ending with an ``end`` token; ``ExpressionError`` when it cannot be."""
    if len(text) > defaults.EXPRESSION_MAX_LENGTH:
        raise ExpressionError(
            N_(
                "the expression is longer than %(limit)s characters",
                limit=defaults.EXPRESSION_MAX_LENGTH,
            ),
            defaults.EXPRESSION_MAX_LENGTH,
            text,
        )
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in " \t\r\n":
            i += 1
        elif char.isascii() and char.isdigit():
            start = i
            while i < n and text[i].isascii() and text[i].isdigit():
                i += 1
            if i + 1 < n and text[i] == "." and text[i + 1].isascii() and text[i + 1].isdigit():
                i += 1
                while i < n and text[i].isascii() and text[i].isdigit():
                    i += 1
            literal = text[start:i]
            if sum(c.isdigit() for c in literal) > defaults.EXPRESSION_MAX_NUMBER_DIGITS:
                raise ExpressionError(
                    N_(
                        "a number has at most %(limit)s digits",
                        limit=defaults.EXPRESSION_MAX_NUMBER_DIGITS,
                    ),
                    start,
                    text,
                )
            value: Any = Decimal(literal) if "." in literal else int(literal)
            tokens.append(Token("number", literal, value, start))
        elif char == "'":
            start, i, parts = i, i + 1, []
            while True:
                close = text.find("'", i)
                if close < 0:
                    raise ExpressionError(
                        N_("unterminated text: a closing ' is missing"), start, text
                    )
                parts.append(text[i:close])
                if close + 1 < n and text[close + 1] == "'":  # '' is a quote inside text
                    parts.append("'")
                    i = close + 2
                    continue
                i = close + 1
                break
            value = "".join(parts)
            if len(value) > defaults.EXPRESSION_MAX_TEXT_LITERAL:
                raise ExpressionError(
                    N_(
                        "a text value is longer than %(limit)s characters",
                        limit=defaults.EXPRESSION_MAX_TEXT_LITERAL,
                    ),
                    start,
                    text,
                )
            tokens.append(Token("string", text[start:i], value, start))
        elif (char.isascii() and (char.isalpha() or char == "_")) or char == "$":
            start = i
            i += 1
            while i < n and text[i].isascii() and (text[i].isalnum() or text[i] == "_"):
                i += 1
            word = text[start:i]
            if char == "$":
                if len(word) == 1:
                    raise ExpressionError(
                        N_("unexpected character %(char)s", char="'$'"), start, text
                    )
                tokens.append(Token("var", word, word[1:].lower(), start))
            elif word.upper() in KEYWORDS:
                tokens.append(Token("keyword", word, word.upper(), start))
            else:
                tokens.append(Token("name", word, word, start))
        elif text[i : i + 2] in _TWO_CHAR:
            tokens.append(Token("op", text[i : i + 2], text[i : i + 2], i))
            i += 2
        elif char in _ONE_CHAR:
            tokens.append(Token("op", char, char, i))
            i += 1
        else:
            raise ExpressionError(N_("unexpected character %(char)s", char=repr(char)), i, text)
    tokens.append(Token("end", "", None, n))
    return tokens


# --- the syntax tree -------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """A node of the tree: its offset in the text; ``type`` is set by the checker."""

    offset: int
    type: str = field(default="", init=False)


@dataclass(eq=False)
class Literal(Node):
    """A number (int or Decimal), text, TRUE/FALSE or NULL (``None``)."""

    value: Any


@dataclass(eq=False)
class Path(Node):
    """A field path (``dealer.credit_limit``), maybe under ``$old`` or ``$user`` (``root``)."""

    parts: tuple[str, ...]
    root: str = ""  # "", "old" or "user"

    @property
    def dotted(self) -> str:
        """The path as written after its root: ``dealer.credit_limit``."""
        return ".".join(self.parts)


@dataclass(eq=False)
class Unary(Node):
    """``-x`` or ``NOT x``."""

    op: str
    operand: Node


@dataclass(eq=False)
class Binary(Node):
    """``a op b``: arithmetic, a comparison, AND or OR."""

    op: str
    left: Node
    right: Node


@dataclass(eq=False)
class In(Node):
    """``x IN (a, b, …)``, or ``NOT IN`` when ``negated``."""

    operand: Node
    items: list[Node]
    negated: bool = False


@dataclass(eq=False)
class Call(Node):
    """A function call; IF is one too. ``name`` is upper case."""

    name: str
    args: list[Node]


@dataclass(eq=False)
class Case(Node):
    """``CASE WHEN c THEN v … [ELSE d] END``: ``whens`` are (condition, value) pairs."""

    whens: list[tuple[Node, Node]]
    default: Node | None


def children(node: Node) -> list[Node]:
    """The node's direct children, in order."""
    if isinstance(node, Unary):
        return [node.operand]
    if isinstance(node, Binary):
        return [node.left, node.right]
    if isinstance(node, In):
        return [node.operand, *node.items]
    if isinstance(node, Call):
        return list(node.args)
    if isinstance(node, Case):
        parts = [part for pair in node.whens for part in pair]
        return parts + ([node.default] if node.default is not None else [])
    return []


# --- the parser ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.at = 0
        self.depth = 0
        self.nodes = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def fail(self, expected: Message, token: Token | None = None) -> ExpressionError:
        token = token or self.token
        return ExpressionError(
            N_("expected %(expected)s, found %(found)s", expected=expected, found=_found(token)),
            token.offset,
            self.text,
        )

    def node(self, node: Node) -> Node:
        self.nodes += 1
        if self.nodes > defaults.EXPRESSION_MAX_NODES:
            raise ExpressionError(
                N_(
                    "the expression is too large (at most %(limit)s parts)",
                    limit=defaults.EXPRESSION_MAX_NODES,
                ),
                node.offset,
                self.text,
            )
        return node

    def enter(self) -> None:
        self.depth += 1
        if self.depth > defaults.EXPRESSION_MAX_DEPTH:
            raise ExpressionError(
                N_(
                    "the expression is nested too deeply (at most %(limit)s levels)",
                    limit=defaults.EXPRESSION_MAX_DEPTH,
                ),
                self.token.offset,
                self.text,
            )

    def is_op(self, *ops: str) -> bool:
        return self.token.kind == "op" and self.token.value in ops

    def is_keyword(self, *words: str) -> bool:
        return self.token.kind == "keyword" and self.token.value in words

    def advance(self) -> Token:
        token = self.token
        self.at += 1
        return token

    def expect_op(self, op: str, expected: Message) -> Token:
        if not self.is_op(op):
            raise self.fail(expected)
        return self.advance()

    def expect_keyword(self, word: str, expected: Message) -> Token:
        if not self.is_keyword(word):
            raise self.fail(expected)
        return self.advance()

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise ExpressionError(N_("the expression is empty"), 0, self.text)
        node = self.expression()
        if self.token.kind != "end":
            raise self.fail(N_("an operator or the end of the expression"))
        return node

    def expression(self) -> Node:
        self.enter()
        node = self.or_()
        self.depth -= 1
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.is_keyword("OR"):
            token = self.advance()
            node = self.node(Binary(token.offset, "OR", node, self.and_()))
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.is_keyword("AND"):
            token = self.advance()
            node = self.node(Binary(token.offset, "AND", node, self.not_()))
        return node

    def not_(self) -> Node:
        if self.is_keyword("NOT"):
            token = self.advance()
            self.enter()
            operand = self.not_()
            self.depth -= 1
            return self.node(Unary(token.offset, "NOT", operand))
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        if self.token.kind == "op" and self.token.value in COMPARISONS:
            token = self.advance()
            op = "!=" if token.value == "<>" else token.value
            node = self.node(Binary(token.offset, op, node, self.additive()))
        elif self.is_keyword("IN") or (
            self.is_keyword("NOT")
            and self.tokens[self.at + 1].kind == "keyword"
            and self.tokens[self.at + 1].value == "IN"
        ):
            token = self.advance()
            negated = token.value == "NOT"
            if negated:
                self.advance()
            self.expect_op("(", N_("'(' after IN"))
            items = [self.expression()]
            while self.is_op(","):
                self.advance()
                items.append(self.expression())
            self.expect_op(")", N_("',' or ')'"))
            node = self.node(In(token.offset, node, items, negated))
        if (self.token.kind == "op" and self.token.value in COMPARISONS) or self.is_keyword("IN"):
            raise self.fail(N_("AND, OR or the end of a comparison (use parentheses)"))
        return node

    def additive(self) -> Node:
        node = self.term()
        while self.is_op("+", "-"):
            token = self.advance()
            node = self.node(Binary(token.offset, token.value, node, self.term()))
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.is_op("*", "/"):
            token = self.advance()
            node = self.node(Binary(token.offset, token.value, node, self.unary()))
        return node

    def unary(self) -> Node:
        if self.is_op("-"):
            token = self.advance()
            self.enter()
            operand = self.unary()
            self.depth -= 1
            value = operand.value if isinstance(operand, Literal) else None
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                operand.value = -value  # type: ignore[attr-defined]
                operand.offset = token.offset
                return operand
            return self.node(Unary(token.offset, "-", operand))
        return self.primary()

    def primary(self) -> Node:
        token = self.token
        if token.kind in ("number", "string"):
            self.advance()
            return self.node(Literal(token.offset, token.value))
        if token.kind == "keyword" and token.value in ("TRUE", "FALSE", "NULL"):
            self.advance()
            value = {"TRUE": True, "FALSE": False, "NULL": None}[token.value]
            return self.node(Literal(token.offset, value))
        if token.kind == "keyword" and token.value == "CASE":
            return self.case()
        if self.is_op("("):
            self.advance()
            node = self.expression()
            self.expect_op(")", N_("')'"))
            return node
        if token.kind == "var":
            self.advance()
            if token.value not in ("user", "old"):
                raise ExpressionError(
                    N_("unknown variable %(name)s", name=repr(token.text)), token.offset, self.text
                )
            self.expect_op(".", N_("'.' and a field name after %(name)s", name=token.text))
            return self.node(Path(token.offset, self.path_parts(), token.value))
        if token.kind == "name":
            if self.tokens[self.at + 1].kind == "op" and self.tokens[self.at + 1].value == "(":
                return self.call()
            return self.node(Path(token.offset, self.path_parts()))
        raise self.fail(N_("a value, a field or a function"))

    def path_parts(self) -> tuple[str, ...]:
        if self.token.kind != "name":
            raise self.fail(N_("a field name"))
        parts = [self.advance().text]
        while self.is_op("."):
            self.advance()
            if self.token.kind != "name":
                raise self.fail(N_("a field name after '.'"))
            parts.append(self.advance().text)
            if len(parts) > defaults.EXPRESSION_MAX_HOPS + 1:
                raise ExpressionError(
                    N_(
                        "a path follows at most %(limit)s lookups",
                        limit=defaults.EXPRESSION_MAX_HOPS,
                    ),
                    self.tokens[self.at - 1].offset,
                    self.text,
                )
        return tuple(parts)

    def call(self) -> Node:
        name = self.advance()
        self.advance()  # (
        self.enter()
        args: list[Node] = []
        if not self.is_op(")"):
            args.append(self.expression())
            while self.is_op(","):
                self.advance()
                args.append(self.expression())
        self.expect_op(")", N_("',' or ')'"))
        self.depth -= 1
        return self.node(Call(name.offset, name.text.upper(), args))

    def case(self) -> Node:
        start = self.advance()
        self.enter()
        whens: list[tuple[Node, Node]] = []
        self.expect_keyword("WHEN", N_("WHEN after CASE"))
        while True:
            condition = self.expression()
            self.expect_keyword("THEN", N_("THEN"))
            whens.append((condition, self.expression()))
            if not self.is_keyword("WHEN"):
                break
            self.advance()
        default = None
        if self.is_keyword("ELSE"):
            self.advance()
            default = self.expression()
        self.expect_keyword("END", N_("WHEN, ELSE or END"))
        self.depth -= 1
        return self.node(Case(start.offset, whens, default))


def parse(text: str) -> Node:
    """The syntax tree of ``text``; ``ExpressionError`` (with its position) when it is not one."""
    if not isinstance(text, str):
        raise ExpressionError(N_("an expression must be text"), 0, "")
    return _Parser(text).parse()


__all__ = [
    "Binary",
    "Call",
    "Case",
    "ExpressionError",
    "In",
    "Literal",
    "Node",
    "Path",
    "Token",
    "Unary",
    "children",
    "parse",
    "tokenize",
]
