"""Rule conditions to and from JsonLogic (jsonlogic.com), the format visual query builders emit.

``to_jsonlogic(text)`` parses a condition and converts its syntax tree; ``from_jsonlogic(logic)``
turns a rule (a dict, or JSON text) into formula text that ``parse`` reads back, with brackets
only where precedence needs them. Both raise ``FormulaError`` and nothing else: export errors
point at the part of the condition JsonLogic cannot express, import errors name the operator
and where it sits in the rule (``$.and[1]['<=']``).

    formula                      JsonLogic                                notes
    ---------------------------  ---------------------------------------  ------------------------------
    cpa, cpa[last_7d]            {"var": "cpa"}, {"var": "cpa[last_7d]"}  import: a formula name, optional
                                                                          [window]; no dotted paths, no
                                                                          defaults, no keywords
    42, 1.5, -5, 30%             42, 1.5, -5, 0.3                         30% comes back as 0.3
    'it''s', TRUE, FALSE, NULL   "it's", true, false, null
    a AND b AND c, a OR b        {"and": [a, b, c]}, {"or": [a, b]}       a one-item and/or is the item
    NOT a                        {"!": a}                                 import also {"!": [a]}
    a = b, a != b (==, <>)       {"==": [a, b]}, {"!=": [a, b]}           import also === and !==
    a < b, <=, >, >=             {"<": [a, b]}, ...
    a < b AND b < c              (import only) {"<": [a, b, c]}           between, for < and <=; in an
                                                                          and list it joins the chain
    x IN ('a', 'b')              {"in": [x, ["a", "b"]]}
    x NOT IN ('a', 'b')          {"!": {"in": [x, ["a", "b"]]}}           NOT x IN (...) comes back as
                                                                          x NOT IN (...)
    x IS NULL, x IS NOT NULL     {"==": [x, null]}, {"!=": [x, null]}     import: null on either side
    x IS NOT NULL, or x          (import only) {"!!": x}                  see "truthiness" below
    a + b + c, a * b * c         {"+": [a, b, c]}, {"*": [a, b, c]}       a one-item + or * is the item
    a - b, a / b                 {"-": [a, b]}, {"/": [a, b]}
    -a, -(5)                     {"-": [a]}, {"-": [5]}                   -(5) negates 5; -5 is a number
    IF(c, a, b), IF(c, a)        {"if": [c, a, b]}, {"if": [c, a]}        an IF in the else branch joins
                                                                          the chain {"if": [c1, a, c2, b,
                                                                          d]}; import also ?: (3 values)
    LEAST(a, b), GREATEST(a, b)  {"min": [a, b]}, {"max": [a, b]}         a one-item min/max is the item

A left-leaning chain (``a AND b AND c``, how the parser groups it) becomes one JsonLogic list;
explicit grouping on the right (``a AND (b AND c)``) stays nested, so a round trip keeps the tree.

Not expressible, so export refuses them: DIVIDE, COALESCE, ROUND, ABS, LOG, LN, the aggregates
(SUM, AVG, MIN, MAX, COUNT, COUNT_DISTINCT: a JsonLogic rule tests one record), other functions,
``x = NULL`` / ``x != NULL`` (never true in a formula, while JsonLogic's ``== null`` is a null
test: write ``x IS NULL``), keywords in name positions (the parser reads ``x AND AND`` as
``x AND <a name AND>``) and a condition that is a bare constant (``TRUE``: export returns a rule,
a dict). Import refuses string containment (``{"in": ["brand", {"var": "name"}]}``, what
builders emit for "contains"), ``%``, text, array and data operators (``cat``, ``substr``,
``merge``, ``map``, ``filter``, ``reduce``, ``all``, ``some``, ``none``, ``missing``,
``missing_some``, ``log``), ``var`` with a default or a dotted path, lists outside ``in``,
numbers that are not finite or not within ±2**63, and rules nested deeper than the formula
parser accepts.

Truthiness: formulas have none. Builders emit ``{"!!": x}`` for "is not empty" and ``{"!": x}``
for "is empty". ``{"!!": x}`` becomes ``x`` when ``x`` is already true/false (a comparison, a
logical operation, IN, IS NULL, a boolean literal) and ``x IS NOT NULL`` otherwise (0 and '' count
as present); ``{"!": x}`` is always ``NOT x``, which binds only for a true/false ``x``.

Semantics are the formula language's (SQL nulls; ``=`` is neither JavaScript's loose ``==`` nor
its strict ``===``). Round trip: for every condition that fits, ``parse(from_jsonlogic(
to_jsonlogic(t)))`` equals ``parse(t)`` up to the normalisations above (percentages become
decimals, function names upper case, ``NOT x IN`` becomes ``x NOT IN``); ``<>``/``==`` are
already ``!=``/``=`` in the syntax tree.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from workbench.errors import FormulaError
from workbench.formulas import syntax as s
from workbench.formulas.catalog import AGGREGATES, RESERVED
from workbench.formulas.parser import MAX_TREE_DEPTH, TOO_DEEP, parse

__all__ = ["JsonLogic", "from_jsonlogic", "to_jsonlogic"]

JsonLogic = dict[str, Any]

MAX_NODES = 10_000  # a rule larger than this cannot become a formula within the parser's length limit
_INT_LIMIT = 2**63
_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([A-Za-z_][A-Za-z0-9_]*)\])?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMPARE_OUT = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_COMPARE_IN = {"==": "=", "===": "=", "!=": "!=", "!==": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_NO_JSONLOGIC = {
    "DIVIDE": "DIVIDE (a division that is null when the denominator is 0)",
    "COALESCE": "COALESCE (the first value that is not null)",
    "ROUND": "ROUND", "ABS": "ABS", "LOG": "LOG (logarithms)", "LN": "LN (logarithms)",
}
_UNSUPPORTED_IN = {
    "%": "the remainder operator '%' has no formula equivalent",
    "cat": "text operations (cat) are not supported by formulas",
    "substr": "text operations (substr) are not supported by formulas",
    "merge": "array operations (merge) are not supported by formulas",
    "map": "array operations (map) are not supported by formulas",
    "filter": "array operations (filter) are not supported by formulas",
    "reduce": "array operations (reduce) are not supported by formulas",
    "all": "array operations (all) are not supported by formulas",
    "some": "array operations (some) are not supported by formulas",
    "none": "array operations (none) are not supported by formulas",
    "missing": "'missing' tests the input record's fields; formulas name known metrics: test them with IS NULL",
    "missing_some": "'missing_some' tests the input record's fields; formulas name known metrics: "
                    "test them with IS NULL",
    "log": "'log' prints a value for debugging; remove it from the rule",
    "method": "'method' calls JavaScript methods, which formulas do not have",
}
_SUPPORTED_IN = ("and", "or", "!", "!!", "==", "===", "!=", "!==", "<", "<=", ">", ">=", "in", "+", "-", "*", "/",
                 "if", "?:", "min", "max", "var")


# -- formula -> JsonLogic ---------------------------------------------------------------------------


def to_jsonlogic(condition_text: str) -> JsonLogic:
    """The JsonLogic rule of a condition, e.g. ``{"and": [{">": [{"var": "cpa[last_7d]"}, 20]}, ...]}``.

    Raises a positioned ``FormulaError`` when the condition does not parse or does not fit
    JsonLogic (see the module docstring for what does).
    """
    node = parse(condition_text)
    try:
        logic = _Exporter(condition_text).convert(node)
    except RecursionError:  # a deep condition called from deep in the stack
        raise FormulaError(TOO_DEEP, condition_text) from None
    if not isinstance(logic, dict):
        raise FormulaError("the condition does not fit JsonLogic: it is a constant, not a rule; "
                           "JsonLogic export needs a comparison, a logical operation or a name",
                           condition_text, node.start, node.end)
    return logic


class _Exporter:
    def __init__(self, text: str) -> None:
        self.text = text

    def _error(self, why: str, node: s.Node) -> FormulaError:
        return FormulaError(f"the condition does not fit JsonLogic: {why}", self.text, node.start, node.end)

    def convert(self, node: s.Node) -> Any:
        if isinstance(node, s.Number | s.String | s.Boolean):
            return node.value
        if isinstance(node, s.Null):
            return None
        if isinstance(node, s.Name):
            for part in (node.name, node.window):
                if part is not None and part.lower() in RESERVED:
                    raise FormulaError(f"'{part}' is a keyword (AND, OR, NOT, IN, IS, NULL, TRUE, FALSE), not a name",
                                       self.text, node.start, node.end)
            return {"var": node.name if node.window is None else f"{node.name}[{node.window}]"}
        if isinstance(node, s.Unary):
            operand = self.convert(node.operand)
            return {"!": operand} if node.op == "not" else {"-": [operand]}
        if isinstance(node, s.Binary):
            return self._binary(node)
        if isinstance(node, s.In):
            items = [self.convert(item) for item in node.items]
            rule = {"in": [self.convert(node.operand), items]}
            return {"!": rule} if node.negated else rule
        if isinstance(node, s.IsNull):
            return {"!=" if node.negated else "==": [self.convert(node.operand), None]}
        if isinstance(node, s.Call):
            return self._call(node)
        raise self._error(f"{type(node).__name__} has no JsonLogic form", node)  # pragma: no cover

    def _binary(self, node: s.Binary) -> JsonLogic:
        op = node.op
        if op in ("and", "or", "+", "*"):
            # a left-leaning chain (how a AND b AND c parses) becomes one list; a chain in the
            # right operand stays nested, so the formula comes back with the same structure
            chain: list[s.Node] = [node.right]
            left = node.left
            while isinstance(left, s.Binary) and left.op == op:
                chain.append(left.right)
                left = left.left
            chain.append(left)
            return {op: [self.convert(part) for part in reversed(chain)]}
        if op in ("-", "/"):
            return {op: [self.convert(node.left), self.convert(node.right)]}
        if op in ("=", "!=") and (isinstance(node.left, s.Null) or isinstance(node.right, s.Null)):
            test = "IS NULL" if op == "=" else "IS NOT NULL"
            raise self._error(f"'{op} NULL' is never true in a formula (a comparison with NULL is null), while "
                              f"JsonLogic's {_COMPARE_OUT[op]} null tests for null: write {test}", node)
        if op not in _COMPARE_OUT:  # pragma: no cover - the grammar has no other operators
            raise self._error(f"the operator '{op}' has no JsonLogic form", node)
        return {_COMPARE_OUT[op]: [self.convert(node.left), self.convert(node.right)]}

    def _call(self, node: s.Call) -> JsonLogic:
        fn = node.name.upper()
        n = len(node.args)
        if fn == "IF":
            if node.star or not 2 <= n <= 3:
                raise self._error(f"IF takes a condition and one or two values, got {n} argument"
                                  f"{'' if n == 1 else 's'}", node)
            chain: list[Any] = []
            current: s.Call = node
            while True:
                chain += [self.convert(current.args[0]), self.convert(current.args[1])]
                if len(current.args) == 2:
                    break
                last = current.args[2]
                if isinstance(last, s.Call) and last.name.upper() == "IF" and not last.star \
                        and 2 <= len(last.args) <= 3:
                    current = last
                    continue
                chain.append(self.convert(last))
                break
            return {"if": chain}
        if fn in ("LEAST", "GREATEST"):
            if node.star or n < 2:
                raise self._error(f"{fn} takes at least two values, got {n}", node)
            return {"min" if fn == "LEAST" else "max": [self.convert(a) for a in node.args]}
        if fn in AGGREGATES:
            raise self._error(f"{fn} is an aggregate, and a JsonLogic rule tests one record: it has no "
                              "aggregates; define a metric and compare that", node)
        if fn in _NO_JSONLOGIC:
            raise self._error(f"JsonLogic has no {_NO_JSONLOGIC[fn]}", node)
        raise self._error(f"'{node.name}' is not a function JsonLogic has (it has IF, LEAST as min and "
                          "GREATEST as max)", node)


# -- JsonLogic -> formula ---------------------------------------------------------------------------


def from_jsonlogic(logic: JsonLogic | str) -> str:
    """Formula text of a JsonLogic rule (a dict, or JSON text), e.g. ``cpa[last_7d] > 20 AND spend > 200``.

    The text parses with ``workbench.formulas.parser.parse``; brackets appear only where
    precedence needs them. Raises ``FormulaError`` naming the operator and its path in the rule
    (``$.and[1]``) for anything that has no formula form (see the module docstring).
    """
    if isinstance(logic, str):
        try:
            value = json.loads(logic, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise FormulaError(f"the rule is not valid JSON: {exc.msg}", logic, exc.pos) from None
        except (ValueError, RecursionError) as exc:
            why = "it nests too deep" if isinstance(exc, RecursionError) else str(exc)
            raise FormulaError(f"the rule is not valid JSON: {why}") from None
    elif isinstance(logic, dict):
        value = logic
    else:
        raise FormulaError(f"a JsonLogic rule is a dict or JSON text, not {type(logic).__name__}")
    _check_nesting(value)
    try:
        node = _Importer().convert(value, "$")
        _check_size(node)
        text = _render(node)[0]
    except RecursionError:  # a deep rule called from deep in the stack
        raise FormulaError(TOO_DEEP) from None
    parse(text)  # the contract: the text reads back (or a FormulaError says why not, e.g. too long)
    return text


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _check_nesting(value: Any) -> None:
    """Refuse rules nested deeper than the parser reads (operations; lists count too, so a list
    that contains itself ends), before recursing into them."""
    todo: list[tuple[Any, int, int]] = [(value, 0, 0)]
    while todo:
        current, operations, levels = todo.pop()
        if operations > MAX_TREE_DEPTH or levels > 2 * MAX_TREE_DEPTH:
            raise FormulaError(f"the rule nests more than {MAX_TREE_DEPTH} operations deep, more than a formula "
                               "can hold; split it into metrics that reference each other")
        if isinstance(current, dict):
            todo.extend((v, operations + 1, levels + 1) for v in current.values())
        elif isinstance(current, list):
            todo.extend((v, operations, levels + 1) for v in current)


def _check_size(root: s.Node) -> None:
    """Depth and size of the tree (shared subtrees counted each time), without recursion."""
    done: dict[int, tuple[int, int]] = {}
    todo: list[tuple[s.Node, bool]] = [(root, False)]
    while todo:
        node, expanded = todo.pop()
        if id(node) in done:
            continue
        kids = s.children(node)
        if not expanded:
            todo.append((node, True))
            todo.extend((kid, False) for kid in kids if id(kid) not in done)
            continue
        size = 1 + sum(done[id(kid)][0] for kid in kids)
        depth = 1 + max((done[id(kid)][1] for kid in kids), default=0)
        if depth > MAX_TREE_DEPTH:
            raise FormulaError(TOO_DEEP)
        if size > MAX_NODES:
            raise FormulaError(f"the rule has more than {MAX_NODES} parts; a formula cannot be that long")
        done[id(node)] = (size, depth)


def _at(node: type[s.Node], *args: Any, **kwargs: Any) -> Any:
    """A syntax node without a position (imported nodes have no text yet; positions never compare)."""
    return node(*args, start=0, end=0, **kwargs)


def _key(path: str, op: str) -> str:
    """JSONPath of an operator's arguments: ``$.and``, ``$.and[1]['<=']``."""
    if _IDENT.fullmatch(op):
        return f"{path}.{op}"
    return f"{path}['" + op.replace("\\", "\\\\").replace("'", "\\'") + "']"


def _show(value: Any) -> str:
    """A value as JSON for a message, shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Importer:
    def __init__(self) -> None:
        # between forms made so far (kept alive so their ids stay theirs): inside an 'and' list
        # they join the chain, "x AND 1 < y AND y < 2", rather than nest in brackets
        self.betweens: dict[int, s.Node] = {}

    def _error(self, message: str, path: str) -> FormulaError:
        return FormulaError(f"{message} (at {path})")

    def convert(self, value: Any, path: str) -> s.Node:
        if value is None:
            return _at(s.Null)
        if isinstance(value, bool):
            return _at(s.Boolean, value)
        if isinstance(value, int):
            if not -_INT_LIMIT < value < _INT_LIMIT:
                raise self._error(f"the number {value} is too large for a formula (at most {_INT_LIMIT - 1})", path)
            return _at(s.Number, value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self._error(f"{value} is not a number a formula can hold", path)
            return _at(s.Number, value)
        if isinstance(value, str):
            return _at(s.String, value)
        if isinstance(value, list):
            raise self._error("a list is only allowed as the values of 'in', e.g. "
                              '{"in": [{"var": "platform"}, ["meta", "ttd"]]}', path)
        if not isinstance(value, dict):
            raise self._error(f"{type(value).__name__} is not a JSON value", path)
        if len(value) != 1:
            keys = ", ".join(_show(k) for k in list(value)[:5]) or "none"
            raise self._error(f"a JsonLogic operation is an object with exactly one key (the operator); "
                              f"this one has {len(value)} ({keys})", path)
        ((op, raw),) = value.items()
        if not isinstance(op, str):
            raise self._error(f"unknown JsonLogic operator {_show(op)}", path)
        where = _key(path, op)
        if op in _UNSUPPORTED_IN:
            raise self._error(f"{_UNSUPPORTED_IN[op]} (operator '{op}')", where)
        handler = _OPERATIONS.get(op)
        if handler is None:
            raise self._error(f"unknown JsonLogic operator {_show(op)}; formulas support "
                              + ", ".join(_SUPPORTED_IN), where)
        args = raw if isinstance(raw, list) else [raw]
        arg_paths = [f"{where}[{i}]" for i in range(len(args))] if isinstance(raw, list) else [where]
        result: s.Node = handler(self, op, args, arg_paths, where)
        return result

    def _args(self, args: list[Any], paths: list[str]) -> list[s.Node]:
        out = []
        for arg, path in zip(args, paths, strict=True):
            out.append(self.convert(arg, path))
        return out

    @staticmethod
    def _count(op: str, args: list[Any], where: str, low: int, high: int | None, what: str) -> None:
        if len(args) < low or (high is not None and len(args) > high):
            raise FormulaError(f"'{op}' takes {what}, got {len(args)} (at {where})")

    def _var(self, op: str, args: list[Any], paths: list[str], where: str) -> s.Node:
        self._count(op, args, where, 1, 2, "a name (and optionally a default)")
        if len(args) == 2 and args[1] is not None:
            raise self._error("a default value in 'var' is not supported (it applies to missing fields, which "
                              "formulas do not have); use COALESCE in the formula", where)
        name = args[0]
        if not isinstance(name, str):
            raise self._error(f"'var' needs a name (text), not {_show(name)}", paths[0])
        match = _NAME.fullmatch(name)
        if match is None or any(part is not None and part.lower() in RESERVED for part in match.groups()):
            hint = " (nested fields like a.b are not supported)" if "." in name else ""
            raise self._error(f"{name!r} is not a formula name{hint}: a name is letters, digits and _, not a "
                              "keyword (AND, OR, NOT, IN, IS, NULL, TRUE, FALSE), optionally with a window, "
                              "e.g. cpa[last_7d]", paths[0])
        return _at(s.Name, match.group(1), match.group(2))

    def _logic(self, op: str, args: list[Any], paths: list[str], where: str) -> s.Node:
        self._count(op, args, where, 1, None, "at least one condition")
        parts: list[s.Node] = []
        for part in self._args(args, paths):
            if op == "and" and id(part) in self.betweens:
                assert isinstance(part, s.Binary)
                parts += [part.left, part.right]
            else:
                parts.append(part)
        return self._chain(op, parts, where)

    def _chain(self, op: str, parts: list[s.Node], where: str) -> s.Node:
        if len(parts) > MAX_TREE_DEPTH:
            raise self._error(f"'{op}' has more than {MAX_TREE_DEPTH} values, more than a formula can chain", where)
        node = parts[0]
        for part in parts[1:]:
            node = _at(s.Binary, op, node, part)
        return node

    def _not(self, op: str, args: list[Any], paths: list[str], where: str) -> s.Node:
        self._count(op, args, where, 1, 1, "one value")
        operand = self.convert(args[0], paths[0])
        if isinstance(operand, s.In) and not operand.negated:
            return _at(s.In, operand.operand, operand.items, True)
        return _at(s.Unary, "not", operand)

    def _truthy(self, op: str, args: list[Any], paths: list[str], where: str) -> s.Node:
        self._count(op, args, where, 1, 1, "one value")
        operand = self.convert(args[0], paths[0])
        if _is_boolean(operand):
            return operand
        return _at(s.IsNull, operand, True)

    def _compare(self, op: str, args: list[Any], paths: list[str], where: str) -> s.Node:
        between = op in ("<", "<=")
        self._count(op, args, where, 2, 3 if between else 2, "two values" + (" (or three: a between)" if between
                                                                             else ""))
        parts = self._args(args, paths)
        formula_op = _COMPARE_IN[op]
        if len(parts) == 3:
            low, middle, high = parts
            node: s.Node = _at(s.Binary, "and", _at(s.Binary, formula_op, low, middle),
                                _at(s.Binary, formula_op, middle, high))
            self.betweens[id(node)] = node
            return node
        left, right = parts
        if formula_op in ("=", "!=") and (isinstance(left, s.Null) or isinstance(right, s.Null)):
            operand = right if isinstance(left, s.Null) else left
            return _at(s.IsNull, operand, formula_op == "!=")
        return _at(s.Binary, formula_op, left, right)

    def _in(self, op: str, args: list[Any], paths: list[str], where: str) -> s.Node:
        self._count(op, args, where, 2, 2, "a value and a list of values")
        needle, haystack = args
        if isinstance(haystack, str) or (isinstance(needle, str) and not isinstance(haystack, list)):
            raise self._error("text containment ('in' with a string, what builders emit for 'contains') is not "
                              "supported by formulas; compare with = or IN (...)", where)
        if not isinstance(haystack, list):
            raise self._error("'in' needs a list of values as its second argument, e.g. "
                              '{"in": [{"var": "platform"}, ["meta", "ttd"]]}', paths[1])
        if not haystack:
            raise self._error("'in' with an empty list never matches; a formula IN needs at least one value",
                              paths[1])
        operand = self.convert(needle, paths[0])
        items = self._args(haystack, [f"{paths[1]}[{i}]" for i in range(len(haystack))])
        return _at(s.In, operand, tuple(items))

    def _arith(self, op: str, args: list[Any], paths: list[str], where: str) -> s.Node:
        if op in ("+", "*"):
            self._count(op, args, where, 1, None, "at least one value")
            return self._chain(op, self._args(args, paths), where)
        if op == "-":
            self._count(op, args, where, 1, 2, "one or two values")
            parts = self._args(args, paths)
            return _at(s.Unary, "-", parts[0]) if len(parts) == 1 else _at(s.Binary, "-", *parts)
        self._count(op, args, where, 2, 2, "two values")
        return _at(s.Binary, op, *self._args(args, paths))

    def _if(self, op: str, args: list[Any], paths: list[str], where: str) -> s.Node:
        if op == "?:":
            self._count(op, args, where, 3, 3, "a condition and two values")
        else:
            self._count(op, args, where, 2, None, "a condition and a value (then more condition, value pairs "
                        "and an optional else value)")
        if len(args) > 3 * MAX_TREE_DEPTH:
            raise self._error(f"'{op}' has more than {3 * MAX_TREE_DEPTH} values, more than a formula can nest", where)
        parts = self._args(args, paths)
        # IF(c1, a, IF(c2, b, else)): built from the end
        tail: list[s.Node] = parts[-3:] if len(parts) % 2 else parts[-2:]
        node = _at(s.Call, "IF", tuple(tail))
        rest = parts[: len(parts) - len(tail)]
        while rest:
            node = _at(s.Call, "IF", (rest[-2], rest[-1], node))
            rest = rest[:-2]
        return node

    def _minmax(self, op: str, args: list[Any], paths: list[str], where: str) -> s.Node:
        self._count(op, args, where, 1, None, "at least one value")
        parts = self._args(args, paths)
        if len(parts) == 1:
            return parts[0]
        return _at(s.Call, "LEAST" if op == "min" else "GREATEST", tuple(parts))


_Handler = Callable[[_Importer, str, list[Any], list[str], str], s.Node]
_OPERATIONS: dict[str, _Handler] = {
    "var": _Importer._var, "and": _Importer._logic, "or": _Importer._logic, "!": _Importer._not,
    "!!": _Importer._truthy, "in": _Importer._in, "if": _Importer._if, "?:": _Importer._if,
    "min": _Importer._minmax, "max": _Importer._minmax,
    **dict.fromkeys(_COMPARE_IN, _Importer._compare),
    **dict.fromkeys(("+", "-", "*", "/"), _Importer._arith),
}


def _is_boolean(node: s.Node) -> bool:
    """Whether the node is true/false by its shape (no catalog needed)."""
    if isinstance(node, s.Boolean | s.In | s.IsNull):
        return True
    if isinstance(node, s.Unary):
        return node.op == "not"
    if isinstance(node, s.Binary):
        return node.op in ("and", "or", "=", "!=", "<", "<=", ">", ">=")
    return False


# -- syntax tree -> text ----------------------------------------------------------------------------

# Binding strength, loosest first, as in grammar.lark: OR 1, AND 2, NOT 3, comparison / IN / IS 4,
# + - 5, * / 6, unary minus 7, atoms 8. A child weaker than its slot needs brackets.
_LEVEL = {"or": 1, "and": 2, "=": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5, "*": 6, "/": 6}


def _wrap(node: s.Node, at_least: int) -> str:
    text, level = _render(node)
    return text if level >= at_least else f"({text})"


def _render(node: s.Node) -> tuple[str, int]:
    """Formula text of an imported node and how strongly it binds."""
    if isinstance(node, s.Number):
        text = repr(node.value)
        return text, 7 if text.startswith("-") else 8
    if isinstance(node, s.String):
        return "'" + node.value.replace("'", "''") + "'", 8
    if isinstance(node, s.Boolean):
        return ("TRUE" if node.value else "FALSE"), 8
    if isinstance(node, s.Null):
        return "NULL", 8
    if isinstance(node, s.Name):
        return node.name + ("" if node.window is None else f"[{node.window}]"), 8
    if isinstance(node, s.Call):
        return f"{node.name}({', '.join(_render(arg)[0] for arg in node.args)})", 8
    if isinstance(node, s.Unary):
        if node.op == "not":
            return f"NOT {_wrap(node.operand, 3)}", 3
        # "-5" would read back as the number -5 and "--" starts a comment: a number or a
        # negation under a minus gets brackets
        text, level = _render(node.operand)
        bare = level == 8 and not isinstance(node.operand, s.Number)
        return f"-{text}" if bare else f"-({text})", 7
    if isinstance(node, s.Binary):
        level = _LEVEL[node.op]
        if level == 4:  # comparisons do not chain: both sides are sums
            left, right = _wrap(node.left, 5), _wrap(node.right, 5)
        else:  # left-associative: the right operand binds tighter
            left, right = _wrap(node.left, level), _wrap(node.right, level + 1)
        op = node.op.upper() if node.op in ("and", "or") else node.op
        return f"{left} {op} {right}", level
    if isinstance(node, s.In):
        items = ", ".join(_render(item)[0] for item in node.items)
        return f"{_wrap(node.operand, 5)} {'NOT IN' if node.negated else 'IN'} ({items})", 4
    if isinstance(node, s.IsNull):
        return f"{_wrap(node.operand, 5)} IS {'NOT NULL' if node.negated else 'NULL'}", 4
    raise FormulaError(f"{type(node).__name__} has no formula text")  # pragma: no cover
