"""The Jinja sandbox owners' templates run in, and what is wrong in one before it runs (pure)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from jinja2 import Environment, StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

# What changes a list, dict or set: the immutable sandbox refuses each of them on those, and
# no other value a template sees has them, so calling one never works.
MUTATING_METHODS: Final = frozenset(
    {
        "add", "append", "appendleft", "clear", "difference_update", "discard", "extend",
        "extendleft", "insert", "intersection_update", "pop", "popitem", "popleft", "remove",
        "reverse", "rotate", "setdefault", "sort", "symmetric_difference_update", "update",
    }
)  # fmt: skip


class OwnerSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, where no attribute starting with `_` is ever reached.

    Jinja refuses such an attribute only when the value has it, and otherwise looks for an
    item of that name (`data._id` is `data["_id"]`). Refusing the name itself makes the rule
    one that `template_problems` can check before the template runs; items are still
    reached by subscript (`data["_id"]`).
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute.startswith("_"):
            return self.unsafe_undefined(obj, attribute)
        return super().getattr(obj, attribute)


TEXT_ENVIRONMENT: Final = OwnerSandbox(undefined=StrictUndefined, autoescape=False)
"""The sandbox of an account's own SMS text (`notifications.sms_reminder.text`)."""


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """One thing that stops a template from ever rendering, and its line."""

    line: int | None
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}" if self.line is not None else self.problem


def template_problems(environment: Environment, source: str) -> list[TemplateProblem]:
    """What can be known wrong in `source` before it runs in `environment`: a syntax error, a
    filter or test that does not exist, an attribute or call the sandbox never allows."""
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as exc:
        return [TemplateProblem(exc.lineno, exc.message or str(exc))]
    found = [p for node in _post_order(tree) if (p := _problem(environment, node)) is not None]
    if found:
        return sorted(found, key=lambda p: p.line or 0)
    try:
        # Jinja's own checks of a whole template (a block defined twice, and so on).
        environment.compile(source)
    except TemplateSyntaxError as exc:
        return [TemplateProblem(exc.lineno, exc.message or str(exc))]
    return []


def _post_order(node: nodes.Node) -> Iterator[nodes.Node]:
    """Every node, inner ones first: `a.b.c` gives `a.b` before `.c`, as the source reads."""
    for child in node.iter_child_nodes():
        yield from _post_order(child)
    yield node


def _problem(environment: Environment, node: nodes.Node) -> TemplateProblem | None:
    line = getattr(node, "lineno", None)
    if isinstance(node, nodes.Filter) and node.name not in environment.filters:
        return TemplateProblem(line, f"no filter named {node.name!r}")
    if isinstance(node, nodes.Test) and node.name not in environment.tests:
        return TemplateProblem(line, f"no test named {node.name!r}")
    attribute = None
    if isinstance(node, nodes.Getattr):
        attribute = node.attr
    elif (
        isinstance(node, nodes.Filter)
        and node.name == "attr"
        and node.args
        and isinstance(node.args[0], nodes.Const)
        and isinstance(node.args[0].value, str)
    ):
        attribute = node.args[0].value
    if attribute is not None and attribute.startswith("_"):
        return TemplateProblem(
            line,
            f"the attribute {attribute!r} is never allowed (names starting with '_' are refused)",
        )
    if (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Getattr)
        and node.node.attr in MUTATING_METHODS
    ):
        return TemplateProblem(
            line, f"calling {node.node.attr!r} is never allowed (values cannot be changed)"
        )
    return None
