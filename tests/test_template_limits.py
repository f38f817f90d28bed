"""Template abuse: every payload ends in a located "template too large" message, exit 1 from
``rhflow validate`` and 2 from ``rhflow run``, in bounded time and memory, with nothing sent.

The payloads run in one ``rhflow validate`` subprocess under a 200 MB address-space limit and a
timeout, so an unbounded render fails the test as a MemoryError traceback or a timeout; each is
also rendered in-process for its exact message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rhflow.emulator import Emulator
from rhflow.pipeline.render import RenderError, TemplateLimits, render_value, use_limits
from tests.bounded import rhflow

NEST = "(" * 3000 + "1" + ")" * 3000
CHAIN = "'x'" + " | lower" * 5000
DOUBLING_SETS = (
    "{% set a0 = 'x' * 99999 %}"
    + "".join(f"{{% set a{i + 1} = a{i} ~ a{i} %}}" for i in range(40))
    + "{{ a40 | length }}"
)
PAYLOADS = [
    (
        "nested-loops",
        "nodes",
        "{% for a in range(99999) %}{% for b in range(99999) %}x{% endfor %}{% endfor %}",
    ),
    (
        "nested-loops-silent",
        "nodes",
        "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}",
    ),
    ("percent-width", "nodes", "{{ '%01000000000d' % 1 }}"),
    ("percent-precision", "nodes", "{{ '%.900000000f' % 1.5 }}"),
    ("percent-star-width", "nodes", "{{ '%*d' % (1000000000, 1) }}"),
    ("format-width", "nodes", "{{ '{:>100000000}'.format(1) }}"),
    ("format-nested-width", "nodes", "{{ '{:>{}}'.format(1, 100000000) }}"),
    ("format-filter-width", "nodes", "{{ '%0999999999d' | format(1) }}"),
    (
        "namespace-doubling",
        "nodes",
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set n"
        "s.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    ),
    (
        "namespace-plus-doubling",
        "nodes",
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set n"
        "s.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
    ),
    ("set-chain-doubling", "nodes", DOUBLING_SETS),
    ("indent", "nodes", "{{ ('x\\n' * 50000) | indent(100000) }}"),
    ("replace", "nodes", "{{ ('a' * 99999) | replace('a', 'b' * 99999) }}"),
    ("replace-empty", "nodes", "{{ ('a' * 99999) | replace('', 'b' * 99999) }}"),
    ("join", "nodes", "{{ (['x' * 99999] * 99999) | join }}"),
    ("join-separator", "nodes", "{{ range(99999) | join('x' * 99999) }}"),
    ("list-repr", "nodes", "{{ ['x' * 99999] * 99999 }}"),
    ("list-string", "nodes", "{{ (['x' * 99999] * 99999) | string | length }}"),
    (
        "list-doubling-loop",
        "nodes",
        "{% set ns = namespace(l=['x' * 9999]) %}{% for i in range(64) %}"
        "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}",
    ),
    (
        "list-times-loop",
        "nodes",
        "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns"
        ".l = ns.l * 2 %}{% endfor %}{{ ns.l | length }}",
    ),
    (
        "int-squaring-loop",
        "nodes",
        "{% set ns = namespace(n=3) %}{% for i in range(64) %}{% set ns.n"
        " = ns.n * ns.n %}{% endfor %}{{ ns.n > 0 }}",
    ),
    ("power-tower", "nodes", "{{ 9 ** (9 ** 9) }}"),
    ("recursive-macro", "nodes", "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}"),
    (
        "recursive-macro-doubling",
        "nodes",
        "{% macro m(s) %}{{ m(s ~ s) }}{% endmacro %}{{ m('ab') }}",
    ),
    ("recursive-loop", "nodes", "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}"),
    ("nested-parentheses", "nodes", "{{ " + NEST + " }}"),
    ("chained-filters", "nodes", "{{ " + CHAIN + " }}"),
    ("nested-ifs", "nodes", "{% if 1 %}" * 3000 + "x" + "{% endif %}" * 3000),
    ("wordwrap", "nodes", "{{ ('x ' * 50000) | wordwrap(1, wrapstring='y' * 99999) }}"),
    ("tojson-indent", "nodes", "{{ (range(99999) | list) | tojson(indent=99999) }}"),
    ("lipsum", "nodes", "{{ lipsum(99999) | length }}"),
    ("percent-many", "nodes", "{{ ('%s' * 50000) % (('x' * 99999,) * 50000) }}"),
    ("loop-output", "nodes", "{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}"),
    ("center-loop", "nodes", "{% for i in range(99999) %}{{ 'x' | center(99999) }}{% endfor %}"),
    (
        "outputs-nested-loops",
        "outputs",
        "{% for a in range(99999) %}{% for b in range(99999) %}x{% endfor %}{% endfor %}.png",
    ),
    ("outputs-percent-width", "outputs", "{{ '%01000000000d' % 1 }}.png"),
    (
        "outputs-recursive-macro",
        "outputs",
        "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}.png",
    ),
    ("outputs-chained-filters", "outputs", "{{ " + CHAIN + " }}.png"),
    ("outputs-power", "outputs", "{{ 9 ** (9 ** 9) }}.png"),
]


def pipeline(where: str, source: str) -> str:
    text = json.dumps(source)
    head = 'version: 1\nsteps:\n  x:\n    workflow: "1904136902449209346"\n    nodes:\n'
    if where == "nodes":
        return head + f'      "6": {{text: {text}}}\n'
    return head + f'      "6": {{text: hi}}\n    outputs: {text}\n'


def test_every_payload_is_refused_by_validate_in_bounded_time_and_memory(tmp_path: Path) -> None:
    names = []
    for name, where, source in PAYLOADS:
        (tmp_path / f"{name}.yaml").write_text(pipeline(where, source), encoding="utf-8")
        names.append(f"{name}.yaml")
    result = rhflow("validate", *names, cwd=tmp_path, timeout=2 * len(names))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr == ""
    errors = [line for line in result.stdout.splitlines() if "not checked" not in line]
    assert len(errors) == len(PAYLOADS)
    for line, (name, where, _) in zip(errors, PAYLOADS, strict=True):
        path = "steps.x.nodes.6.text" if where == "nodes" else "steps.x.outputs"
        line_col = "6:19" if where == "nodes" else "7:14"
        assert line.startswith(f"{name}.yaml:{line_col}: {path}: template too large: "), line


@pytest.mark.parametrize(("name", "source"), [(n, s) for n, w, s in PAYLOADS if w == "nodes"])
def test_each_payload_renders_to_a_refusal(name: str, source: str) -> None:
    with pytest.raises(RenderError, match=r"^template too large: "):
        render_value(source, {})


def test_run_refuses_a_payload_before_sending_anything(
    tmp_path: Path, make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator()
    payload = dict((name, source) for name, _, source in PAYLOADS)["percent-width"]
    (tmp_path / "p.yaml").write_text(pipeline("nodes", payload), encoding="utf-8")
    result = rhflow(
        "run", "p.yaml", "--base-url", emu.url, "--api-key", api_key, cwd=tmp_path, timeout=20
    )
    assert result.returncode == 2
    assert result.stderr == (
        "Error: p.yaml:6:19: steps.x.nodes.6.text: template too large: %(): a size of "
        "1000000000 is over the limit of 100000\n"
    )
    assert emu.stats()["requests"] == {}
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'x'" + " ~ 'x'" * 5000 + " }}", "x" * 5001),  # long but flat
        ("{% for i in range(1000) %}{{ i % 10 }}{% endfor %}", "0123456789" * 100),
        ("{{ '%05d' % 42 }}-{{ '{:>6}'.format('ab') }}", "00042-    ab"),
        ("{{ ['a', 'b'] | join(', ') }}|{{ 'a\nb' | indent(2) }}", "a, b|a\n  b"),
        ("{% macro m(n) %}{{ m(n - 1) if n else 'end' }}{% endmacro %}{{ m(40) }}", "end"),
        ("{% set ns = namespace(s='') %}{% for i in range(5) %}{% set ns.s = ns.s ~ i %}"
         "{% endfor %}{{ ns.s }}", "01234"),
        ("{{ 'a' * 1000 + 'b' }}", "a" * 1000 + "b"),
    ],
)  # fmt: skip
def test_ordinary_templates_stay_within_the_limits(source: str, expected: str) -> None:
    assert render_value(source, {}) == expected


def test_the_limits_can_be_raised_for_a_large_pipeline() -> None:
    source = "{% for i in range(3000) %}{{ 'x' * 500 }}{% endfor %}"
    with pytest.raises(RenderError, match="the output is over 1,000,000 characters"):
        render_value(source, {})
    with use_limits(TemplateLimits.parse(["value=2000000"])):
        assert len(render_value(source, {})) == 1_500_000
    with pytest.raises(RenderError, match="the output is over"):
        render_value(source, {})


def test_a_limit_can_be_lowered() -> None:
    with (
        use_limits(TemplateLimits.parse(["steps=100"])),
        pytest.raises(RenderError, match=r"^template too large: more than 100 loop iterations"),
    ):
        render_value("{% for i in range(200) %}{% endfor %}", {})
    with (
        use_limits(TemplateLimits.parse(["depth=5"])),
        pytest.raises(RenderError, match=r"^template too large: calls nested more than 5 deep"),
    ):
        render_value("{% macro m(n) %}{{ m(n - 1) if n else '' }}{% endmacro %}{{ m(9) }}", {})


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["speed=3"], "unknown template limit 'speed'; limits are: value, total, size, steps, "
                      "depth, seconds, source"),
        (["value=lots"], "'value=lots': the value must be a number"),
        (["seconds=0"], "'seconds=0': the value must be a positive, finite number"),
    ],
)  # fmt: skip
def test_wrong_limit_names_and_values_are_refused(items: list[str], message: str) -> None:
    with pytest.raises(ValueError) as info:
        TemplateLimits.parse(items)
    assert str(info.value) == message


def test_the_templates_of_a_pipeline_are_bounded_together(tmp_path: Path) -> None:
    from rhflow.errors import PlanError
    from rhflow.pipeline.loader import load_pipeline
    from rhflow.planning.planner import plan

    path = tmp_path / "p.yaml"
    path.write_text(
        'version: 1\nsteps:\n  x:\n    workflow: "1"\n    matrix: {n: {range: [0, 20]}}\n'
        '    nodes:\n      "6": {text: "{{ \'x\' * 99990 }}{{ n }}"}\n',
        encoding="utf-8",
    )
    assert len(plan(load_pipeline(path)).tasks) == 20  # 2,000,000 characters in all
    with use_limits(TemplateLimits.parse(["total=1000000"])), pytest.raises(PlanError) as info:
        plan(load_pipeline(path))
    assert str(info.value) == (
        f"{path}:7:19: steps.x.nodes.6.text: template too large: the templates of this pipeline "
        "render more than 1,000,000 characters together; raise it with --template-limit total=N"
    )


def test_the_limit_options_reach_validate_plan_and_run(
    tmp_path: Path, make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    (tmp_path / "p.yaml").write_text(
        'version: 1\nsteps:\n  x:\n    workflow: "1"\n    matrix: {n: {range: [0, 30]}}\n'
        '    nodes:\n      "6": {text: "{% for i in range(50) %}{{ n }}{% endfor %}"}\n',
        encoding="utf-8",
    )
    low = ("--max-tasks", "10")
    result = rhflow("validate", "p.yaml", *low, cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert "steps.x: step 'x' would make 30 tasks, more than --max-tasks 10;" in result.stdout
    steps = ("--template-limit", "steps=20")
    result = rhflow("plan", "p.yaml", *steps, cwd=tmp_path, timeout=30)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("Error: p.yaml:7:19: steps.x.nodes.6.text: template too large")
    emu = make_emulator()
    result = rhflow("run", "p.yaml", *low, "--base-url", emu.url, "--api-key", api_key,
                    cwd=tmp_path, timeout=30)  # fmt: skip
    assert result.returncode == 2 and "more than --max-tasks 10" in result.stderr
    result = rhflow("validate", "p.yaml", "--template-limit", "speed=1", cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: --template-limit unknown template limit 'speed'")
    assert emu.stats()["requests"] == {}
    assert rhflow("validate", "p.yaml", cwd=tmp_path, timeout=30).returncode == 0
