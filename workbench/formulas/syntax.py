"""The parsed formula: plain nodes that remember where they came from in the text.

Nodes are produced by ``parser.parse`` and consumed by ``binder.bind``; they know nothing of
metrics, units or backends. ``start``/``end`` are character offsets into the formula text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Node:
    start: int = field(kw_only=True, compare=False)
    end: int = field(kw_only=True, compare=False)


@dataclass(frozen=True)
class Number(Node):
    value: int | float
    percent: bool = False  # written as 30% (value already divided by 100)


@dataclass(frozen=True)
class String(Node):
    value: str


@dataclass(frozen=True)
class Boolean(Node):
    value: bool


@dataclass(frozen=True)
class Null(Node):
    pass


@dataclass(frozen=True)
class Name(Node):
    name: str
    window: str | None = None  # cpa[last_7d]: reserved for the rule engine's windows


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "-" or "not"
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # + - * / = != < <= > >= and or
    left: Node
    right: Node


@dataclass(frozen=True)
class In(Node):
    operand: Node
    items: tuple[Node, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node
    negated: bool = False


@dataclass(frozen=True)
class Call(Node):
    name: str  # as written; function names are case-insensitive
    args: tuple[Node, ...]
    star: bool = False  # COUNT(*)


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary | IsNull):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, In):
        return (node.operand, *node.items)
    if isinstance(node, Call):
        return node.args
    return ()


def preorder(root: T, children_of: Callable[[T], tuple[T, ...]]) -> list[T]:
    """Every node of a tree, parents before children (iterative: trees can be deep)."""
    out: list[T] = []
    todo = [root]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(reversed(children_of(current)))
    return out


def walk(node: Node) -> list[Node]:
    """Every node of the syntax tree, parents before children."""
    return preorder(node, children)
