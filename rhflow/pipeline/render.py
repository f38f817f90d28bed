"""Sandboxed Jinja2 templates with typed rendering; the only module that imports jinja2.

A value that is exactly one expression keeps its type (``"{{ seed }}"`` renders ``3``, not
``"3"``); anything else renders to a string. Templates run in an immutable sandbox with
``StrictUndefined``: no file system, no environment, no Python internals, and an unknown name is
an error rather than an empty string. What a template may compute is bounded (size, steps, time,
depth: :mod:`rhflow.pipeline.sandbox`); a limit reached is a RenderError "template too large".
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rhflow.errors import PlanError, UsageError
from rhflow.pipeline.sandbox import (
    TemplateLimits,
    TooLarge,
    bounded,
    build_environment,
    check_source,
    check_tree,
    check_value,
    limits,
    use_limits,
)

__all__ = ["RenderError", "Template", "TemplateLimits", "compile_template", "is_template",
           "render_text", "render_value", "template_limits", "use_limits"]  # fmt: skip

_SINGLE_EXPRESSION = re.compile(r"\A\s*\{\{(?P<expr>(?:(?!\{\{|\}\}|\{%|\{#).)*)\}\}\s*\Z", re.S)
_MARKERS = ("{{", "{%", "{#")


class RenderError(PlanError):
    """A template cannot be compiled or rendered; ``str()`` says why, without location."""


def _slug(value: object, sep: str = "-") -> str:
    """``"A Red Fox!"`` -> ``"a-red-fox"``: safe in file names."""
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9]+", sep, text).strip(sep).lower()
    return text or "x"


def _zpad(value: object, width: int = 3) -> str:
    """``7 | zpad(3)`` -> ``"007"``."""
    return str(value).zfill(width)


def _build_environment() -> ImmutableSandboxedEnvironment:
    return build_environment({"slug": _slug, "zpad": _zpad})


ENV = _build_environment()
_GLOBALS = dict(ENV.globals)

#: Names every template may use, besides the step's parameters.
BASE_NAMES = frozenset({"vars", "step", "params", "needs"})
#: Names only the ``outputs`` template may use.
OUTPUT_NAMES = frozenset({"index", "ext", "node_id", "task"})


def is_template(value: object) -> bool:
    """True if ``value`` is a string holding Jinja markup."""
    # the markers of _MARKERS, spelled out: a generator per call cost a tenth of planning
    return (
        isinstance(value, str)
        and "{" in value
        and ("{{" in value or "{%" in value or "{#" in value)
    )


class Template:
    """A compiled template: ``render(context)`` returns a typed value or a string.

    A single expression is compiled as ``{% set result = EXPR %}`` (what Jinja2's
    ``compile_expression`` does) so that its value is read back with its type. Rendering passes
    the context to ``new_context(..., shared=True)`` with the globals merged in once, which
    avoids Jinja2's per-call merge and keeps large sweeps fast.
    """

    __slots__ = ("_is_expr", "_needs", "_plain", "_single", "_template", "names", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            check_source(ENV, source)
            ast = ENV.parse(source)
            check_tree(ast)
            self.names = frozenset(meta.find_undeclared_variables(ast))
            self._needs = _needs_references(ast)
            match = _SINGLE_EXPRESSION.match(source)
            self._is_expr = match is not None
            self._template = ENV.from_string(_expression_ast(match["expr"]) if match else ast)
            self._template.globals = _GLOBALS  # a plain dict: cheaper per render than a ChainMap
            self._plain = _plain_pieces(ast)
            # "{{ name }}": its value, typed, the most common template of all
            self._single: str | None = None
            if self._is_expr and self._plain is not None and len(self._plain) == 1:
                piece = self._plain[0]
                if not isinstance(piece, str) and piece[1:] == (None, None, ()):
                    self._single = piece[0]
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"template syntax error: {exc.message}") from exc
        except TooLarge as exc:
            raise RenderError(f"template too large: {exc}") from exc
        except RecursionError as exc:  # what the token count cannot see (``not not ... x``)
            raise RenderError(f"template too large: {_too_deep()}") from exc

    @property
    def is_name(self) -> bool:
        """The template is one name, ``{{ name }}``: rendering it is a lookup."""
        return self._single is not None

    @property
    def needs(self) -> frozenset[str]:
        """Upstream step names referenced as ``needs.NAME`` or ``needs["NAME"]``."""
        return self._needs

    def render(self, context: Mapping[str, Any]) -> Any:
        if self._single is not None and self._single in context:
            return check_value(context[self._single], "a value")
        if self._plain is not None:
            value = _render_plain(self._plain, context, typed=self._is_expr)
            if value is not _UNSURE:
                return value
        try:
            return bounded(lambda: self._render(context))
        except TooLarge as exc:
            raise RenderError(f"template too large: {exc}") from exc
        except RecursionError as exc:
            raise RenderError(f"template too large: {_too_deep()}") from exc
        except jinja2.exceptions.SecurityError as exc:
            raise RenderError(f"not allowed in a pipeline template: {exc}") from exc
        except jinja2.UndefinedError as exc:
            raise RenderError(f"undefined in template: {_undefined_text(exc)}") from exc
        except jinja2.TemplateError as exc:
            raise RenderError(f"template error: {exc}") from exc
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise RenderError(f"template error: {exc}") from exc

    def _render(self, context: Mapping[str, Any]) -> Any:
        ctx = self._template.new_context({**_GLOBALS, **context}, shared=True)
        if not self._is_expr:
            return _concat(self._template.root_render_func(ctx))
        for _ in self._template.root_render_func(ctx):
            pass
        value = ctx.vars["result"]
        if isinstance(value, jinja2.Undefined):
            str(value)  # raises the UndefinedError (or SecurityError) it stands for
        return check_value(value, "a value")


# -- plain templates: text, names, vars.KEY and zpad/slug with constants, rendered directly ----

#: A piece of a plain template: literal text, or (name, key or None, filter or None, args).
_Piece = str | tuple[str, str | None, Any, tuple[Any, ...]]
_UNSURE = object()  # the direct rendering cannot tell: Jinja2 renders (and reports) it
_PLAIN_FILTERS = {"zpad": _zpad, "slug": _slug}
_DICT_NAMES = frozenset(dir(dict))
_SPECIAL = frozenset({"self", "loop", "super", "caller", "varargs", "kwargs"})


def _plain_argument(name: str, arg: Any) -> bool:
    """A small constant argument: a width up to 64 for zpad, a short separator for slug."""
    if name == "zpad":
        return type(arg) is int and 0 <= arg <= 64
    return type(arg) is str and len(arg) <= 8


def _plain_pieces(ast: nodes.Template) -> tuple[_Piece, ...] | None:
    """The pieces of a template that only prints names, ``NAME.KEY`` and ``NAME | zpad(N)``
    or ``| slug`` with constant arguments; None for anything else (it renders through Jinja2).
    Most sweep templates are such, and rendering them needs no sandbox: nothing is called or
    computed but ``str``, the two filters and a dict lookup."""
    if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
        return None
    pieces: list[_Piece] = []
    for node in ast.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            pieces.append(node.data)
            continue
        piece = _plain_piece(node)
        if piece is None:
            return None
        pieces.append(piece)
    return tuple(pieces)


def _plain_piece(node: nodes.Node) -> _Piece | None:
    func: Any = None
    args: tuple[Any, ...] = ()
    if isinstance(node, nodes.Filter):
        consts = all(isinstance(arg, nodes.Const) for arg in node.args)
        if node.name not in _PLAIN_FILTERS or node.kwargs or node.dyn_args or node.dyn_kwargs:
            return None
        if not consts or len(node.args) > 1 or node.node is None:
            return None
        args = tuple(getattr(arg, "value", None) for arg in node.args)
        if not all(_plain_argument(node.name, arg) for arg in args):
            return None
        func, node = _PLAIN_FILTERS[node.name], node.node
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in _SPECIAL:
        return (node.name, None, func, args)
    if (
        isinstance(node, nodes.Getattr)
        and isinstance(node.node, nodes.Name)
        and node.attr not in _DICT_NAMES
        and not node.attr.startswith("_")
    ):
        return (node.node.name, node.attr, func, args)
    return None


def _render_plain(pieces: tuple[_Piece, ...], context: Mapping[str, Any], *, typed: bool) -> Any:
    """What Jinja2 renders for a plain template, or _UNSURE when a name is not in the context
    (a global, or an error Jinja2 words), a key is missing, or the text is over the limit."""
    out: list[str] = []
    value: Any = None
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        name, key, func, args = piece
        if name not in context:
            return _UNSURE
        value = context[name]
        if key is not None:
            if type(value) is not dict or key not in value:
                return _UNSURE
            value = value[key]
        if func is not None:
            value = func(value, *args)
        if not typed:
            out.append(value if type(value) is str else str(value))
    if typed:
        return check_value(value, "a value")
    text = "".join(out)
    return text if len(text) <= limits().value else _UNSURE


def _too_deep() -> str:
    return f"nested too deeply for Python (the depth limit is {limits().depth})"


def _concat(pieces: Iterator[str]) -> str:
    """The pieces a template outputs, joined; TooLarge once they pass the value limit."""
    cap = limits().value
    out: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > cap:
            raise TooLarge(f"the output is over {cap:,} characters")
        out.append(piece)
    return "".join(out)


def _expression_ast(expr: str) -> nodes.Template:
    parser = Parser(ENV, expr, state="variable")
    body = parser.parse_expression()
    if not parser.stream.eos:
        token = parser.stream.current
        raise jinja2.TemplateSyntaxError(f"unexpected {token.value!r}", token.lineno)
    return nodes.Template([nodes.Assign(nodes.Name("result", "store"), body)], lineno=1)


def _undefined_text(exc: jinja2.UndefinedError) -> str:
    text = str(exc.message or exc)
    match = re.fullmatch(r"'(\w+)' is undefined", text)
    if match:
        return f"'{match[1]}' is not defined"
    match = re.fullmatch(r"'dict object' has no attribute '(\w+)'", text)
    return f"no key '{match[1]}'" if match else text


def _needs_references(ast: nodes.Template) -> frozenset[str]:
    found: set[str] = set()
    for node in ast.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "needs":
            found.add(node.attr)
    for item in ast.find_all(nodes.Getitem):
        key = item.arg.value if isinstance(item.arg, nodes.Const) else None
        if isinstance(item.node, nodes.Name) and item.node.name == "needs" and isinstance(key, str):
            found.add(key)
    return frozenset(found)


@lru_cache(maxsize=4096)
def compile_template(source: str) -> Template:
    """Compile ``source`` once; raises RenderError for a syntax error."""
    return Template(source)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render ``value`` if it is a template string; other values are returned unchanged."""
    if not is_template(value):
        return value
    return compile_template(value).render(context)


def render_text(source: str, context: Mapping[str, Any]) -> str:
    """Render ``source`` to a string, whatever its single expression's type."""
    value = render_value(source, context)
    return value if isinstance(value, str) else str(value)


@contextlib.contextmanager
def template_limits(items: Iterable[str] = ()) -> Iterator[TemplateLimits]:
    """Render under the default limits with ``--template-limit NAME=N`` items applied."""
    try:
        chosen = TemplateLimits.parse(items)
    except ValueError as exc:
        raise UsageError(f"--template-limit {exc}") from None
    with use_limits(chosen):
        yield chosen
