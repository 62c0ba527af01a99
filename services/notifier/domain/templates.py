"""Message templates: sandboxed Jinja2, checked when the config loads, strict when rendered.

Templates run in Jinja2's `ImmutableSandboxedEnvironment` (no attribute access to internals, no
mutation of the context) with `StrictUndefined`, so a value that is missing at send time raises
`TemplateRenderError` (the send is recorded as failed) instead of leaving a blank in a message.
At config check every template must compile and use only the documented `VARIABLES`; references
to `traits.<name>` are listed by `referenced_traits` so the config can check them against its
declared traits. Use `{{ traits.first_name | default("there") }}` for an optional trait.

`html` fields are autoescaped; every other field is plain text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Final

from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.environment import Template
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import AfterValidator, Field

from shared.config import StrictModel

VARIABLES: Final = frozenset(
    {
        "user_id",
        "traits",
        "points",
        "tier",
        "stage",
        "segments",
        "locale",
        "timezone",
        "email",
        "campaign",
        "variant",
        "unsubscribe_url",
        "expiring_points",
        "expiring_at",
        "nps",
    }
)
"""Every name a template may use: the user (`user_id`, `traits` (a mapping), `email`, `locale`,
`timezone`, `stage`, `segments`), rewards (`points` balance, `tier`, `expiring_points` and
`expiring_at` (ISO date) for a points-expiring reminder), `nps` (`score`, `category`,
`comment` of the latest answer, or None), `campaign`, `variant` and `unsubscribe_url`."""
MAX_TEMPLATE_CHARS: Final = 20_000
MAX_RENDERED_CHARS: Final = 100_000

_TEXT: Final = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_HTML: Final = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


class TemplateRenderError(Exception):
    """A template failed at send time; `field` names the template field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_template(source: str) -> str:
    """Compile `source` and check its variables; ValueError naming the problem otherwise."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"a template is at most {MAX_TEMPLATE_CHARS} characters")
    try:
        ast = _TEXT.parse(source)
        undeclared = meta.find_undeclared_variables(ast)  # runs the compiler: unknown filters fail
        _compiled(source, False)
    except TemplateError as exc:
        raise ValueError(f"template does not compile: {exc}") from exc
    unknown = undeclared - VARIABLES
    if unknown:
        raise ValueError(
            f"template uses unknown variable(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(VARIABLES))})"
        )
    return source


TemplateText = Annotated[str, AfterValidator(check_template)]
"""A config field holding a template: compiled and checked at validation."""


def referenced_traits(source: str) -> set[str]:
    """The trait names `source` reads as `traits.name` or `traits["name"]`."""
    ast = _TEXT.parse(source)
    found: set[str] = set()
    for node in ast.find_all(nodes.Getattr):
        assert isinstance(node, nodes.Getattr)
        if isinstance(node.node, nodes.Name) and node.node.name == "traits":
            found.add(node.attr)
    for item in ast.find_all(nodes.Getitem):
        assert isinstance(item, nodes.Getitem)
        reads_traits = isinstance(item.node, nodes.Name) and item.node.name == "traits"
        if reads_traits and isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
            found.add(item.arg.value)
    return found


class TemplateSpec(StrictModel):
    """The fields of one message; which are required depends on the channel (see `CHANNEL_FIELDS`)."""

    subject: TemplateText | None = None
    text: TemplateText | None = None
    html: TemplateText | None = None
    title: TemplateText | None = None
    body: TemplateText | None = None
    url: TemplateText | None = None
    payload: dict[str, TemplateText] | None = Field(default=None, min_length=1)

    def sources(self) -> dict[str, str]:
        """Every template of this message by field path (`subject`, `payload.title`, ...)."""
        out = {
            name: value
            for name in ("subject", "text", "html", "title", "body", "url")
            if (value := getattr(self, name)) is not None
        }
        out.update({f"payload.{k}": v for k, v in (self.payload or {}).items()})
        return out


CHANNEL_FIELDS: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "email": (frozenset({"subject", "text"}), frozenset({"subject", "text", "html"})),
    "inapp": (frozenset({"title", "body"}), frozenset({"title", "body", "url"})),
    "webhook": (frozenset({"payload"}), frozenset({"payload"})),
}
"""Per channel: (required fields, allowed fields) of its template."""


def channel_problem(spec: TemplateSpec, channel: str) -> str | None:
    """Why `spec` does not fit `channel`, or None when it does."""
    required, allowed = CHANNEL_FIELDS[channel]
    present = {name for name in TemplateSpec.model_fields if getattr(spec, name) is not None}
    missing, extra = required - present, present - allowed
    article = "an" if channel[0] in "aeiou" else "a"
    if missing:
        return f"{article} {channel} template needs {', '.join(sorted(missing))}"
    if extra:
        return f"{article} {channel} template takes only {', '.join(sorted(allowed))}, not {', '.join(sorted(extra))}"
    return None


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A rendered message: `fields` (subject/text/html/title/body/url) and webhook `payload`."""

    fields: dict[str, str] = field(default_factory=dict)
    payload: dict[str, str] = field(default_factory=dict)


def render(spec: TemplateSpec, context: Mapping[str, Any]) -> RenderedMessage:
    """Render every field of `spec` with `context`; `TemplateRenderError` on any failure."""
    fields: dict[str, str] = {}
    payload: dict[str, str] = {}
    for path, source in spec.sources().items():
        try:
            text = _compiled(source, path == "html").render(context)
        except TemplateError as exc:  # StrictUndefined, sandbox violations, filter errors
            raise TemplateRenderError(path, str(exc)) from exc
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateRenderError(path, f"{type(exc).__name__}: {exc}") from exc
        if len(text) > MAX_RENDERED_CHARS:
            raise TemplateRenderError(path, f"renders to more than {MAX_RENDERED_CHARS} characters")
        if path.startswith("payload."):
            payload[path.removeprefix("payload.")] = text
        else:
            fields[path] = text
    return RenderedMessage(fields, payload)


@lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> Template:
    return (_HTML if html else _TEXT).from_string(source)
