"""Templates: sandboxed, strict about missing values, checked at config time."""

from __future__ import annotations

import re

import pytest

from services.notifier.domain.templates import (
    TemplateRenderError,
    TemplateSpec,
    channel_problem,
    check_template,
    referenced_traits,
    render,
)


def spec(**fields: object) -> TemplateSpec:
    return TemplateSpec.model_validate(fields)


def test_renders_every_field_and_the_payload() -> None:
    message = render(
        spec(title="Hi {{ traits.first_name }}", body="{{ points }} points", payload={"tier": "{{ tier }}"}),
        {"traits": {"first_name": "Ada"}, "points": 120, "tier": "gold"},
    )
    assert message.fields == {"title": "Hi Ada", "body": "120 points"}
    assert message.payload == {"tier": "gold"}


def test_missing_value_fails_instead_of_printing_a_blank() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render(spec(title="Hi {{ traits.first_name }}!"), {"traits": {}})
    assert info.value.field == "title"
    assert "first_name" in info.value.message
    assert render(spec(title="Hi {{ traits.first_name | default('there') }}!"), {"traits": {}}).fields == {
        "title": "Hi there!"
    }


def test_html_is_autoescaped_and_text_is_not() -> None:
    context = {"traits": {"first_name": "<b>Ada</b>"}}
    message = render(spec(html="<p>{{ traits.first_name }}</p>", text="{{ traits.first_name }}"), context)
    assert message.fields["html"] == "<p>&lt;b&gt;Ada&lt;/b&gt;</p>"
    assert message.fields["text"] == "<b>Ada</b>"


@pytest.mark.parametrize(
    "source",
    [
        "{{ traits.__class__.__mro__ }}",
        "{{ ''.__class__.__subclasses__() }}",
        "{{ traits.update({'x': 1}) }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_refuses_internals_and_mutation(source: str) -> None:
    with pytest.raises(TemplateRenderError):
        render(spec(body=source), {"traits": {"first_name": "Ada"}, "cycler": object()})


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ frist_name }}", "unknown variable(s) frist_name"),
        ("{% for x in %}", "does not compile"),
        ("{{ points | nosuchfilter }}", "does not compile"),
        ("x" * 20_001, "at most 20000 characters"),
    ],
)
def test_check_template_refuses(source: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        check_template(source)


def test_check_template_accepts_documented_variables_and_locals() -> None:
    source = "{% set n = points %}{% for s in segments %}{{ s }}{% endfor %}{{ n }} {{ unsubscribe_url }}"
    assert check_template(source) == source


def test_referenced_traits() -> None:
    assert referenced_traits("{{ traits.first_name }} {{ traits['plan'] }} {{ tier }} {{ traits.a.b }}") == {
        "first_name",
        "plan",
        "a",
    }


def test_channel_fit() -> None:
    assert channel_problem(spec(subject="s", text="t"), "email") is None
    assert channel_problem(spec(subject="s"), "email") == "an email template needs text"
    assert channel_problem(spec(title="t", body="b", subject="s"), "inapp") == (
        "an inapp template takes only body, title, url, not subject"
    )
    assert channel_problem(spec(payload={"a": "b"}), "webhook") is None
    assert channel_problem(spec(title="t"), "webhook") == "a webhook template needs payload"
