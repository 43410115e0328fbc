"""Text -> syntax tree, with the lark grammar in ``grammar.lark``.

Every failure becomes a ``FormulaError`` with the position of the problem; nothing else
escapes (the fuzz tests hold us to that).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from workbench.errors import FormulaError
from workbench.formulas import syntax as s

MAX_LENGTH = 20_000
MAX_DEPTH = 200
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})
MAX_TREE_DEPTH = 250
TOO_DEEP = (f"the formula has more than {MAX_TREE_DEPTH} operations in a chain; split it into metrics "
            "that reference each other")

# What the parser expected, in words a person reads (terminal name -> description).
_EXPECTED = {
    "NUMBER": "a number", "PERCENT": "a percentage", "STRING": "a quoted string", "NAME": "a name",
    "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "LSQB": "'['", "RSQB": "']'",
    "COMP": "a comparison", "ADD": "'+' or '-'", "MUL": "'*' or '/'", "AND": "AND", "OR": "OR",
    "NOT": "NOT", "IN": "IN", "IS": "IS", "NULL": "NULL", "TRUE": "TRUE", "FALSE": "FALSE",
}


@functools.cache
def _parser() -> Lark:
    grammar = (Path(__file__).with_name("grammar.lark")).read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


class _Pos(TypedDict):
    start: int
    end: int


def _span(tok: Token) -> _Pos:
    start = tok.start_pos or 0
    end = tok.end_pos if tok.end_pos is not None else start + len(tok)
    return {"start": start, "end": end}


def _join(first: s.Node, last: s.Node | Token) -> _Pos:
    end = last.end if isinstance(last, s.Node) else _span(last)["end"]
    return {"start": first.start, "end": end}


class _Build(Transformer[Token, s.Node]):
    """Lark tree -> ``syntax`` nodes. Positions come from tokens and child nodes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def _close(self, start: int, after: int) -> int:
        """The offset just past the closing bracket that ends a call or list."""
        idx = after
        while idx < len(self.text) and self.text[idx] in " \t\r\n":
            idx += 1
        return idx + 1 if idx < len(self.text) and self.text[idx] in ")]" else max(after, start + 1)

    @v_args(inline=True)
    def number(self, tok: Token) -> s.Node:
        text = str(tok)
        value: int | float
        if any(c in text for c in ".eE"):
            value = float(text)
            if value in (float("inf"), float("-inf")):
                raise FormulaError("this number is too large", self.text, **_span(tok))
        else:
            value = int(text)
            if value >= 2**63:
                raise FormulaError("this number is too large (at most 9223372036854775807)", self.text, **_span(tok))
        return s.Number(value, **_span(tok))

    @v_args(inline=True)
    def percent(self, tok: Token) -> s.Node:
        return s.Number(float(str(tok)[:-1]) / 100, percent=True, **_span(tok))

    @v_args(inline=True)
    def string(self, tok: Token) -> s.Node:
        raw = str(tok)
        quote = raw[0]
        return s.String(raw[1:-1].replace(quote * 2, quote), **_span(tok))

    @v_args(inline=True)
    def true(self, tok: Token) -> s.Node:
        return s.Boolean(True, **_span(tok))

    @v_args(inline=True)
    def false(self, tok: Token) -> s.Node:
        return s.Boolean(False, **_span(tok))

    @v_args(inline=True)
    def null(self, tok: Token) -> s.Node:
        return s.Null(**_span(tok))

    def _not_keyword(self, tok: Token) -> None:
        # the contextual lexer reads a keyword as a name where no keyword fits ("x AND AND")
        if str(tok).lower() in _KEYWORDS:
            raise FormulaError(f"'{tok}' is a keyword, not a name: check the formula around here",
                               self.text, **_span(tok))

    @v_args(inline=True)
    def name(self, tok: Token) -> s.Node:
        self._not_keyword(tok)
        return s.Name(str(tok), **_span(tok))

    @v_args(inline=True)
    def windowed(self, tok: Token, window: Token) -> s.Node:
        self._not_keyword(tok)
        self._not_keyword(window)
        span = _span(tok)
        return s.Name(str(tok), str(window), start=span["start"], end=self._close(span["start"], _span(window)["end"]))

    def call(self, children: list[s.Node | Token]) -> s.Node:
        tok = children[0]
        assert isinstance(tok, Token)
        args = tuple(c for c in children[1:] if isinstance(c, s.Node))
        after = args[-1].end if args else _span(tok)["end"] + 1
        return s.Call(str(tok), args, start=_span(tok)["start"], end=self._close(_span(tok)["start"], after))

    @v_args(inline=True)
    def call_star(self, tok: Token, star: Token) -> s.Node:
        if str(star) != "*":
            raise FormulaError("expected a value or '*' here", self.text, **_span(star))
        return s.Call(str(tok), (), star=True, start=_span(tok)["start"],
                      end=self._close(_span(tok)["start"], _span(star)["end"]))

    @v_args(inline=True)
    def sign(self, op: Token, operand: s.Node) -> s.Node:
        start = _span(op)["start"]
        if str(op) == "+":
            return operand
        if isinstance(operand, s.Number) and operand.start == _span(op)["end"]:
            return s.Number(-operand.value, operand.percent, start=start, end=operand.end)
        return s.Unary("-", operand, start=start, end=operand.end)

    @v_args(inline=True)
    def binop(self, left: s.Node, op: Token, right: s.Node) -> s.Node:
        return s.Binary(str(op), left, right, **_join(left, right))

    @v_args(inline=True)
    def compare(self, left: s.Node, op: Token, right: s.Node) -> s.Node:
        ops = {"==": "=", "<>": "!="}
        return s.Binary(ops.get(str(op), str(op)), left, right, **_join(left, right))

    @v_args(inline=True)
    def and_op(self, left: s.Node, _op: Token, right: s.Node) -> s.Node:
        return s.Binary("and", left, right, **_join(left, right))

    @v_args(inline=True)
    def or_op(self, left: s.Node, _op: Token, right: s.Node) -> s.Node:
        return s.Binary("or", left, right, **_join(left, right))

    @v_args(inline=True)
    def not_op(self, op: Token, operand: s.Node) -> s.Node:
        return s.Unary("not", operand, start=_span(op)["start"], end=operand.end)

    def _in(self, children: list[s.Node | Token], negated: bool) -> s.Node:
        operand = children[0]
        assert isinstance(operand, s.Node)
        items = tuple(c for c in children[1:] if isinstance(c, s.Node))
        return s.In(operand, items, negated, start=operand.start, end=self._close(operand.start, items[-1].end))

    def in_op(self, children: list[s.Node | Token]) -> s.Node:
        return self._in(children, False)

    def not_in_op(self, children: list[s.Node | Token]) -> s.Node:
        return self._in(children, True)

    def is_null(self, children: list[s.Node | Token]) -> s.Node:
        operand, last = children[0], children[-1]
        assert isinstance(operand, s.Node) and isinstance(last, Token)
        return s.IsNull(operand, False, **_join(operand, last))

    def is_not_null(self, children: list[s.Node | Token]) -> s.Node:
        operand, last = children[0], children[-1]
        assert isinstance(operand, s.Node) and isinstance(last, Token)
        return s.IsNull(operand, True, **_join(operand, last))


def _depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]":
            depth -= 1
    return deepest


def _syntax_error(exc: UnexpectedInput, text: str) -> FormulaError:
    pos = exc.pos_in_stream if exc.pos_in_stream is not None else len(text)
    if isinstance(exc, UnexpectedCharacters):
        char = text[pos] if pos < len(text) else ""
        hint = " (strings take single quotes: 'meta')" if char in "`" else ""
        return FormulaError(f"unexpected character {char!r}{hint}", text, pos, pos + 1)
    if isinstance(exc, UnexpectedEOF):
        return FormulaError("the formula ends too early: " + _expected(exc.expected), text, len(text))
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            return FormulaError("the formula ends too early: " + _expected(exc.expected), text, len(text))
        start, end = _span(tok)["start"], _span(tok)["end"]
        if tok.type == "COMP" and "COMP" not in exc.expected:
            return FormulaError("comparisons cannot be chained; combine two comparisons with AND",
                                text, start, end)
        if tok.type in _VALUE_START - {"ADD", "NOT"} and exc.expected & {"MUL", "ADD", "COMP"}:
            return FormulaError(f"unexpected {str(tok)!r}: two values need an operator between them "
                                "(+ - * /, a comparison, AND, OR)", text, start, end)
        return FormulaError(f"unexpected {str(tok)!r}: {_expected(exc.expected)}", text, start, end)
    return FormulaError("the formula does not parse", text, pos, pos + 1)


_VALUE_START = frozenset({"NUMBER", "PERCENT", "STRING", "NAME", "LPAR", "TRUE", "FALSE", "NULL", "NOT", "ADD"})


def _expected(expected: Iterable[str]) -> str:
    names = {str(n) for n in expected if not str(n).startswith("__")}
    if names and names <= _VALUE_START:
        return "expected a value here (a number, a name, a 'quoted string' or '(')"
    names -= _VALUE_START
    words = sorted({"the end of the formula" if n == "$END" else _EXPECTED.get(n, n.lower()) for n in names})
    if not words:
        return "check the formula around here"
    return "expected " + ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1]


def _tree_depth(node: s.Node) -> int:
    deepest, todo = 0, [(node, 1)]
    while todo:
        current, depth = todo.pop()
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in s.children(current))
    return deepest


def parse(text: str) -> s.Node:
    """Parse formula ``text`` into a syntax tree, or raise a positioned ``FormulaError``.

    Trees are immutable, so parses are cached by text (a dashboard parses the same formulas on
    every refresh); errors are raised each time, never cached.
    """
    if not isinstance(text, str):
        raise FormulaError(f"a formula is text, not {type(text).__name__}")
    return _parse(text)


@functools.lru_cache(maxsize=16384)
def _parse(text: str) -> s.Node:
    if not text.strip():
        raise FormulaError("the formula is empty")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"the formula is longer than {MAX_LENGTH} characters")
    if _depth(text) > MAX_DEPTH:
        raise FormulaError(f"the formula nests brackets more than {MAX_DEPTH} deep")
    try:
        tree = _parser().parse(text)
        node = _Build(text).transform(tree)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, FormulaError):
            raise exc.orig_exc from None
        raise FormulaError(f"the formula could not be read: {exc.orig_exc}", text) from None
    except RecursionError:
        raise FormulaError(TOO_DEEP, text) from None
    except LarkError as exc:
        raise FormulaError(f"the formula could not be read: {type(exc).__name__}", text) from None
    if _tree_depth(node) > MAX_TREE_DEPTH:
        raise FormulaError(TOO_DEEP, text)
    return node
