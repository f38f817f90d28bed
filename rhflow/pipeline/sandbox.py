"""The bounded Jinja2 sandbox: what a template may compute, and how much.

Pipeline files come from pull requests and ``rhflow validate`` renders them in CI, so a template
must not be able to exhaust memory, time or the stack. Jinja2's ``ImmutableSandboxedEnvironment``
keeps templates away from Python internals but bounds only a single ``range()``. This module
bounds the rest by checking sizes *before* anything large is built, in the hooks every
operation goes through:

- ``call`` (every function, method and macro call), ``call_binop`` (``+ * % **``), every filter
  (wrapped), ``str.format``, ``namespace`` attributes and ``~`` (compiled to a checked join);
- every ``for`` loop iterates through a guard, and every hook counts a step, checks the
  deadline and the nesting of calls (macros calling themselves, recursive loops);
- the text a template outputs is counted as it is produced.

Checking sizes before building, rather than rendering in a subprocess under a deadline and a
memory limit, keeps rendering in-process and fast (a sweep renders each template once per task)
and fails with a message naming the limit; the deadline is checked at every step, so a template
that stays small but loops long is stopped too. A limit reached raises :class:`TooLarge`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, generate_lorem_ipsum


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    """How much one template may compute; ``--template-limit NAME=N`` raises one."""

    #: Longest text (characters) or largest value (characters of its strings plus one per item)
    #: one template may build or output.
    value: int = 1_000_000
    #: Most characters all the templates of one pipeline may render together (every task).
    total: int = 32_000_000
    #: Largest size argument: a width, a precision, a count (``center(n)``, ``'%0nd'``, ``* n``).
    size: int = 100_000
    #: Most loop iterations, calls, filters and operators one render may perform.
    steps: int = 1_000_000
    #: Deepest nesting of calls (a macro calling itself) and of the template's own structure.
    depth: int = 50
    #: Longest time one render may take, in seconds.
    seconds: float = 1.0
    #: Longest template source, in characters.
    source: int = 100_000

    @classmethod
    def parse(cls, items: Iterable[str]) -> TemplateLimits:
        """``["value=5000000", "seconds=3"]`` -> limits with those raised; ValueError if wrong."""
        limits = cls()
        names = [f.name for f in fields(cls)]
        for item in items:
            name, _, text = item.partition("=")
            if name.strip() not in names:
                raise ValueError(
                    f"unknown template limit {name.strip()!r}; limits are: {', '.join(names)}"
                )
            try:
                value = float(text) if name.strip() == "seconds" else int(text.replace("_", ""))
            except ValueError:
                raise ValueError(f"{item!r}: the value must be a number") from None
            if not value > 0 or value == float("inf"):  # NaN fails every comparison
                raise ValueError(f"{item!r}: the value must be a positive, finite number")
            limits = replace(limits, **{name.strip(): value})  # type: ignore[arg-type]
        return limits


class TooLarge(Exception):
    """A template reached one of its limits; ``str()`` says which."""


_LIMITS: list[TemplateLimits] = [TemplateLimits()]


def limits() -> TemplateLimits:
    """The limits in force (process-wide, so worker threads render under them too)."""
    return _LIMITS[-1]


@contextlib.contextmanager
def use_limits(chosen: TemplateLimits) -> Iterator[TemplateLimits]:
    """Render under ``chosen`` limits inside the ``with`` block."""
    _LIMITS.append(chosen)
    try:
        yield chosen
    finally:
        _LIMITS.remove(chosen)


class _Budget:
    """One render's counters: steps taken, calls nested, the deadline."""

    __slots__ = ("deadline", "depth", "limits", "steps")

    def __init__(self, chosen: TemplateLimits) -> None:
        self.limits = chosen
        self.steps = 0
        self.depth = 0
        self.deadline = time.monotonic() + chosen.seconds

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.limits.steps:
            raise TooLarge(f"more than {self.limits.steps:,} loop iterations, calls and operations")
        if time.monotonic() > self.deadline:
            raise TooLarge(f"rendering took more than {self.limits.seconds:g} s")


_CURRENT: ContextVar[_Budget | None] = ContextVar("rhflow_render_budget", default=None)


def _budget() -> _Budget:
    budget = _CURRENT.get()
    # outside ``bounded()`` (jinja2's own render): fresh counters, so sizes are still checked
    return _Budget(limits()) if budget is None else budget


def bounded(render: Callable[[], Any]) -> Any:
    """``render()`` with fresh counters (a plain call: a ``with`` costs more per task)."""
    token = _CURRENT.set(_Budget(_LIMITS[-1]))
    try:
        return render()
    finally:
        _CURRENT.reset(token)


# -- sizes -----------------------------------------------------------------------------------


def weight(value: Any, cap: int | None = None) -> int:
    """The size of ``value``: characters of its strings and digits of its numbers, plus one per
    item of its lists and mappings; stops counting past ``cap`` (default: the value limit)."""
    if type(value) is str:  # most rendered values: no stack needed
        return len(value)
    if type(value) is int:
        return value.bit_length() * 3 // 10 + 1
    cap = limits().value if cap is None else cap
    total = 0
    stack = [value]
    while stack and total <= cap:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += len(item) + 1
            if len(item) > cap:
                return total
            stack.extend(item)
        elif isinstance(item, dict):
            total += len(item) + 1
            if len(item) > cap:
                return total
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, int):
            total += item.bit_length() * 3 // 10 + 1
        else:
            total += 1
    return total


def check_value(value: Any, what: str = "a value") -> Any:
    """``value`` unchanged, or TooLarge when it is over the value limit."""
    cap = limits().value
    if isinstance(value, str):
        size = len(value)
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        size = weight(value, cap)
    else:
        return value
    if size > cap:
        raise TooLarge(f"{what} of more than {cap:,} characters")
    return value


def _expect(size: int, what: str) -> None:
    """TooLarge when something about to be built would be over the value limit."""
    cap = limits().value
    if size > cap:
        raise TooLarge(f"{what} would be {size:,} characters, more than {cap:,}")


def check_sizes(name: str, args: Iterable[Any]) -> None:
    """TooLarge for an integer size argument over the size limit (``center(10 ** 8)``)."""
    cap = limits().size
    for value in args:
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            raise TooLarge(f"{name}(): a size of {value} is over the limit of {cap}")


_NUMBERS = re.compile(r"\d+")
_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def check_percent(fmt: str, args: Any) -> None:
    """``fmt % args`` would stay within the limits (widths, precisions, result size)."""
    values = list(args.values()) if isinstance(args, dict) else (
        list(args) if isinstance(args, tuple) else [args]
    )  # fmt: skip
    numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    specs = _PERCENT.findall(fmt)
    widths = [int(w) for spec in specs for w in spec[:2] if w.isdigit()]
    if any(w == "*" for spec in specs for w in spec[:2]):
        widths += numbers
    check_sizes("%", widths)
    largest = max((weight(v) for v in values), default=0)
    _expect(len(fmt) + len(specs) * (max(widths, default=0) + largest), "the formatted text")


def check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``fmt.format(*args, **kwargs)`` would stay within the limits."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error, with its message
    widths = [int(n) for _, _, spec, _ in parsed for n in _NUMBERS.findall(spec or "")]
    if any("{" in (spec or "") for _, _, spec, _ in parsed):  # '{:>{}}': an argument is a width
        widths += [v for v in (*args, *kwargs.values()) if isinstance(v, int)]
    check_sizes("format", widths)
    fields_ = sum(1 for _, name, _, _ in parsed if name is not None)
    largest = max((weight(v) for v in (*args, *kwargs.values())), default=0)
    size = len(fmt) + fields_ * (max(widths, default=0) + largest)
    _expect(size, "the formatted text")


# -- filters: estimate what a filter would build, before it builds it ------------------------


def _est_indent(text: Any, width: Any = 4, *_: Any, **__: Any) -> int:
    text = str(text)
    pad = len(width) if isinstance(width, str) else int(width or 0)
    return len(text) + (text.count("\n") + 1) * pad


def _est_replace(text: Any, old: Any, new: Any, count: Any = None, *_: Any) -> int:
    text, old, new = str(text), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


def _est_wordwrap(text: Any, width: Any = 79, *args: Any, **kwargs: Any) -> int:
    wrap = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
    text = str(text)
    return len(text) * (1 + len(str(wrap) if wrap is not None else "\n"))


def _est_tojson(value: Any, indent: Any = None, *_: Any) -> int:
    size = weight(value)
    return size * (4 + (indent if isinstance(indent, int) else 0) * limits().depth)


def _est_format(fmt: Any, *args: Any, **kwargs: Any) -> int:
    check_percent(str(fmt), kwargs if kwargs else tuple(args))
    return 0


def _est_center(value: Any, width: Any = 80, *_: Any) -> int:
    return max(len(str(value)), width if isinstance(width, int) else 0)


#: Filters whose result can be much larger than their input, and how large it would be.
_ESTIMATES: dict[str, Callable[..., int]] = {
    "indent": _est_indent,
    "replace": _est_replace,
    "wordwrap": _est_wordwrap,
    "tojson": _est_tojson,
    "format": _est_format,
    "center": _est_center,
}
#: Filters whose integer arguments are sizes of what they build.
_SIZED = frozenset({"batch", "center", "indent", "slice", "tojson", "zpad", "truncate"})


def _join(value: Any, d: str = "", attribute: Any = None) -> tuple[list[Any], int]:
    items = list(value)
    size = sum(weight(item) for item in items) + len(str(d)) * max(0, len(items) - 1)
    return items, size


def guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a filter) counted as a step, its size arguments and its result bounded."""
    skip = 2 if hasattr(func, "jinja_pass_arg") else 1  # the context, if passed, then the value
    estimate = _ESTIMATES.get(name)

    @functools.wraps(func)
    def bounded_filter(*args: Any, **kwargs: Any) -> Any:
        _budget().tick()
        if name in _SIZED:
            check_sizes(name, [*args[skip:], *kwargs.values()])
        if estimate is not None:
            _expect(estimate(*args[skip - 1 :], **kwargs), f"the result of {name}")
        if name == "join" and len(args) >= skip:
            items, size = _join(*args[skip - 1 :], **kwargs)
            _expect(size, "the joined text")
            args = (*args[: skip - 1], items, *args[skip:])
        if name == "sum" and len(args) >= skip and kwargs.get("start", 0) != 0:
            items = list(args[skip - 1])
            _expect(weight(items) * len(items), "summing these lists")
            args = (*args[: skip - 1], items, *args[skip:])
        return check_value(func(*args, **kwargs), f"the result of {name}")

    return bounded_filter


# -- globals ---------------------------------------------------------------------------------


class BoundedNamespace(Namespace):
    """``namespace()``, whose attributes are checked against the value limit when set."""

    def __setitem__(self, name: str, value: Any) -> None:
        check_value(value, f"namespace attribute '{name}'")
        super().__setitem__(name, value)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    _expect(n * max * 12, "the lorem ipsum")
    return generate_lorem_ipsum(n, html, min, max)


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """What a ``for`` loop iterates: the same items, one step each."""
    budget = _budget()
    for item in iterable:
        budget.tick()
        yield item


def _join_checked(parts: tuple[Any, ...]) -> str:
    """``a ~ b ~ c``: joined once the total size is known to be within the value limit."""
    texts = [str(check_value(part)) for part in parts]
    _expect(sum(map(len, texts)), "the joined text")
    return "".join(texts)


# -- the environment -------------------------------------------------------------------------


class _CodeGenerator(CodeGenerator):
    """Compiles ``for`` loops to iterate through ``environment.loop_guard`` and ``~`` to
    ``environment.join_checked``."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        node = copy.copy(node)
        guard = nodes.EnvironmentAttribute("loop_guard", lineno=node.lineno)
        node.iter = nodes.Call(guard, [node.iter], [], None, None, lineno=node.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_checked((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


_CALL_KEYS = ("_loop_vars", "_block_vars", "caller")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with every operation counted and every size checked."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"+", "*", "%", "**"})
    loop_guard = staticmethod(_loop_guard)
    join_checked = staticmethod(_join_checked)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        target = getattr(obj, "__wrapped__", obj)  # str.format comes wrapped by the sandbox
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):  # 'a'.ljust(n), .center, .zfill, .format ...
            name = getattr(target, "__name__", "")
            if name == "format_map" and args and isinstance(args[0], Mapping):
                check_format(owner, (), args[0])
            elif name == "format":
                check_format(owner, args, kwargs)
            else:
                check_sizes(target.__name__, [*args, *kwargs.values()])
        for value in (*args, *(v for k, v in kwargs.items() if k not in _CALL_KEYS)):
            check_value(value, "an argument")
        budget.depth += 1
        try:
            if budget.depth > budget.limits.depth:
                raise TooLarge(f"calls nested more than {budget.limits.depth} deep")
            return check_value(super().call(context, obj, *args, **kwargs), "a call's result")
        finally:
            budget.depth -= 1

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _budget().tick()
        if operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                _expect(weight(left) + weight(right), "the sum")
            return left + right
        if operator == "%":
            if isinstance(left, str):
                check_percent(left, right)
            return left % right
        if operator == "*":
            return _multiply(left, right)
        return _power(left, right)


def _multiply(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
            if len(seq) * count > limits().size:
                raise TooLarge(f"the result would exceed {limits().size} items")
            _expect(weight(seq) * count, "the product")
    whole = isinstance(left, int) and isinstance(right, int)
    if whole and left.bit_length() + right.bit_length() > MAX_POWER_BITS:
        raise TooLarge("the product is too large a number")
    return left * right


#: Largest result of ``**`` and ``*`` on whole numbers, in bits.
MAX_POWER_BITS = 4096


def _power(left: Any, right: Any) -> Any:
    whole = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
    if whole and right * abs(left).bit_length() > MAX_POWER_BITS:
        raise TooLarge("the power is too large a number")
    return left**right


def build_environment(
    extra_filters: Mapping[str, Callable[..., Any]],
) -> ImmutableSandboxedEnvironment:
    """The bounded sandbox with ``extra_filters`` added; every filter is guarded."""
    import jinja2

    env = BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False,
                         keep_trailing_newline=True)  # fmt: skip
    env.filters.update(extra_filters)
    for name, func in list(env.filters.items()):
        env.filters[name] = guard_filter(name, func)
    env.globals["namespace"] = BoundedNamespace
    env.globals["lipsum"] = _lipsum
    return env


# -- the template's own structure ------------------------------------------------------------

_OPENERS = frozenset({"if", "for", "macro", "call", "filter", "with", "block", "autoescape"})
_BRACKETS = {"lparen": 1, "lbracket": 1, "lbrace": 1, "rparen": -1, "rbracket": -1, "rbrace": -1}


def check_source(env: ImmutableSandboxedEnvironment, source: str) -> None:
    """TooLarge for a template too long or nested too deeply to parse safely: brackets and
    blocks are counted on the token stream, which Jinja2 produces without recursion."""
    chosen = limits()
    if len(source) > chosen.source:
        raise TooLarge(f"the template is {len(source):,} characters, more than {chosen.source:,}")
    depth = 0
    after_begin = False
    pending_set = False
    for lineno, kind, value in env.lexer.tokenize(source):
        if kind == "block_begin":
            after_begin = True
            continue
        if after_begin and kind == "name":
            if value.startswith("end"):
                depth -= 1
            elif value in _OPENERS:
                depth += 1
            pending_set = value == "set"
        elif kind == "assign":
            pending_set = False
        elif kind == "block_end" and pending_set:
            depth += 1  # {% set x %}...{% endset %}
            pending_set = False
        after_begin = False
        depth += _BRACKETS.get(kind, 0)
        if depth > chosen.depth:
            raise TooLarge(f"nested more than {chosen.depth} deep (line {lineno} of the template)")


def check_tree(ast: nodes.Node) -> None:
    """TooLarge for a parsed template whose expressions nest more than the depth limit (a long
    chain of filters or operators), which compiling would recurse through."""
    cap = limits().depth * 2
    stack = [(ast, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > cap:
            raise TooLarge(f"expressions nested more than {cap} deep (a chain of filters or "
                           "operators); split it with {% set %}")  # fmt: skip
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
