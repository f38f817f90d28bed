"""Typed rendering, filters, StrictUndefined and the sandbox."""

from __future__ import annotations

import pytest

from rhflow.pipeline.render import (
    RenderError,
    compile_template,
    is_template,
    render_text,
    render_value,
)


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        ("{{ seed }}", {"seed": 3}, 3),
        ("  {{ seed }}  ", {"seed": 3}, 3),
        ("{{ cfg * 2 }}", {"cfg": 1.5}, 3.0),
        ("{{ flag }}", {"flag": False}, False),
        ("{{ items }}", {"items": [1, 2]}, [1, 2]),
        ("{{ seed + 1 }}", {"seed": 3}, 4),
        ("seed {{ seed }}", {"seed": 3}, "seed 3"),
        ("{{ a }}{{ b }}", {"a": 1, "b": 2}, "12"),
        ("{% if x %}yes{% endif %}", {"x": 1}, "yes"),
        ("plain text", {}, "plain text"),
        (7, {}, 7),
        (None, {}, None),
    ],
)
def test_a_single_expression_keeps_its_type(
    source: object, context: dict, expected: object
) -> None:
    value = render_value(source, context)
    assert value == expected
    assert type(value) is type(expected)


def test_render_text_always_gives_a_string() -> None:
    assert render_text("{{ n }}", {"n": 5}) == "5"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'A Red Fox!' | slug }}", "a-red-fox"),
        ("{{ 'Café au lait' | slug }}", "cafe-au-lait"),
        ("{{ '***' | slug }}", "x"),
        ("{{ 'a b' | slug('_') }}", "a_b"),
        ("{{ 7 | zpad(3) }}", "007"),
        ("{{ 1234 | zpad(3) }}", "1234"),
        ("{{ 5 | zpad }}", "005"),
    ],
)
def test_filters(source: str, expected: str) -> None:
    assert render_value(source, {}) == expected


def test_an_undefined_name_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(RenderError) as info:
        render_value("a {{ subjcet }}", {"subject": "cat"})
    assert str(info.value) == "undefined in template: 'subjcet' is not defined"


def test_an_undefined_single_expression_is_an_error() -> None:
    with pytest.raises(RenderError) as info:
        render_value("{{ vars.stlye }}", {"vars": {"style": "ink"}})
    assert str(info.value) == "undefined in template: no key 'stlye'"


def test_a_syntax_error_is_reported() -> None:
    with pytest.raises(RenderError) as info:
        compile_template("{{ seed ")
    assert str(info.value).startswith("template syntax error: ")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "x {{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ range.__self__ }}",
        "{% include '/etc/passwd' %}",
        "{% import 'os' as os %}",
        "{{ range(10 ** 7) | list | length }}",
        "{{ [].append(1) }}",
        "{{ 'a' * 10 ** 9 }}",
        "{{ [0] * 10 ** 9 }}",
        "{{ (10 ** 1000) ** 1000 }}",
        "x{{ 7 ** 100000 }}",
        "{{ {}.update(a=1) }}",
    ],
)
def test_sandbox_escapes_are_refused(source: str) -> None:
    with pytest.raises(RenderError):
        render_value(source, {})


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("{{ 'a'.ljust(10 ** 8) }}", "ljust(): a size of 100000000"),
        ("{{ 'a'.zfill(width=100001) }}", "zfill(): a size of 100001"),
        ("{{ 'a' | center(10 ** 8) }}", "center(): a size of 100000000"),
        ("{{ 'a' | center(100000000) }}", "center(): a size of 100000000"),
        ("{{ seed | zpad(10 ** 9) }}", "zpad(): a size of 1000000000"),
        ("{{ [1] | batch(10 ** 8, 0) | list }}", "batch(): a size of 100000000"),
        ("{{ [1] | slice(10 ** 8) | list }}", "slice(): a size of 100000000"),
        ("{{ 'a' | indent(10 ** 8, first=true) }}", "indent(): a size of 100000000"),
        ("{{ [[1]] | tojson(indent=10 ** 8) }}", "tojson(): a size of 100000000"),
    ],
)
def test_size_arguments_are_capped(source: str, refused: str) -> None:
    with pytest.raises(RenderError) as info:
        render_value(source, {"seed": 7})
    assert str(info.value) == (f"template too large: {refused} is over the limit of 100000")


def test_large_numbers_are_still_values() -> None:
    seed = 156680208700286
    context = {"seed": seed}
    assert render_value("{{ seed | zpad(5) }}-{{ seed | center(17) }}", context) == (
        f"{seed}- {seed} "
    )
    assert render_value("{{ '%d' | format(seed) }}/{{ '{}'.format(seed) }}", context) == (
        f"{seed}/{seed}"
    )
    assert render_value("{{ [seed] | batch(1) | list }}", context) == [[seed]]
    assert render_value("{{ 'a'.ljust(100000) | length }}", context) == 100_000


def test_ordinary_arithmetic_still_works() -> None:
    assert render_value("{{ 2 ** 10 }}", {}) == 1024
    assert render_value("{{ 'ab' * 3 }}", {}) == "ababab"
    assert render_value("{{ 3 * 4 }}", {}) == 12
    assert render_value("{{ 2.0 ** -1 }}", {}) == 0.5


def test_environment_and_files_are_not_reachable() -> None:
    with pytest.raises(RenderError):
        render_value("{{ environ }}", {})
    with pytest.raises(RenderError):
        render_value("{{ open('/etc/hostname') }}", {})


def test_needs_references_are_found() -> None:
    template = compile_template("{{ needs.draft.outputs[0] }} {{ needs['other'].urls[1] }}")
    assert template.needs == {"draft", "other"}
    assert "needs" in template.names


def test_is_template() -> None:
    assert is_template("{{ x }}")
    assert is_template("{% if x %}{% endif %}")
    assert not is_template("plain")
    assert not is_template(3)


PLAIN_CONTEXT = {
    "seed": 7,
    "subject": "Red Fox!",
    "ratio": 0.5,
    "flag": True,
    "nothing": None,
    "items": [1, 2],
    "vars": {"style": "ink", "n": 3},
    "step": "gen",
}


@pytest.mark.parametrize(
    "source",
    [
        "{{ seed }}",
        " {{ seed }} ",
        "{{ vars.style }}",
        "{{ ratio }}",
        "{{ flag }}",
        "{{ nothing }}",
        "{{ items }}",
        "a {{ subject }}, {{ vars.style }} #{{ seed }}",
        "{{ subject | slug }}/{{ seed | zpad(5) }}-{{ vars.n | zpad }}.png",
        "{{ subject | slug('_') }}",
        "{{ step }}-{{ items }}-{{ nothing }}-{{ flag }}",
    ],
)
def test_a_plain_template_renders_without_jinja_exactly_as_jinja_does(source: str) -> None:
    from rhflow.pipeline.sandbox import bounded

    template = compile_template(source)
    assert template._plain is not None  # rendered directly
    direct = template.render(PLAIN_CONTEXT)
    through_jinja = bounded(lambda: template._render(PLAIN_CONTEXT))
    assert direct == through_jinja and type(direct) is type(through_jinja)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ missing }}", "'missing' is not defined"),
        ("{{ vars.nope }}", "no key 'nope'"),
        ("{{ seed.real }}", None),  # not a mapping: Jinja2 decides
        ("{{ vars.items }}", None),  # a dict method, not a key: Jinja2 decides
        ("{{ range }}", None),  # a global
        ("{{ seed | zpad(100000) }}", None),  # too wide for the direct path
    ],
)
def test_what_the_direct_path_cannot_tell_goes_through_jinja(
    source: str, message: str | None
) -> None:
    from rhflow.pipeline.sandbox import bounded

    template = compile_template(source)
    if message is not None:
        with pytest.raises(RenderError, match=message):
            template.render(PLAIN_CONTEXT)
        return
    try:
        expected: object = bounded(lambda: template._render(PLAIN_CONTEXT))
    except Exception as exc:  # the same error either way
        with pytest.raises(RenderError):
            template.render(PLAIN_CONTEXT)
        assert exc is not None
        return
    assert template.render(PLAIN_CONTEXT) == expected
