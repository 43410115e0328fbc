"""The notification payload: one shape that every channel renders.

    {"title": str,                              # subject line, Slack header, inbox title
     "items": [{"title": str,                   # one alert; a digest is several items
                "text": str,                    # a sentence or two (plain text)
                "values": {label: display}}],   # figures already formatted, e.g. {"CPA": "$41.20"}
     "org": str,                                # the organisation (slug or display name)
     "rule": str | None,                        # the rule that fired, when a rule sent it
     "link": str | None}                        # where to look next (a dashboard URL)

Values are display strings: the sender formats numbers in the organisation's currency and
units, so every channel shows the same figures. Unknown keys are refused, so a typo in a rule's
notification template fails when the notification is queued, not when it is read.
"""

from __future__ import annotations

import html
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from workbench.errors import ValidationError


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    text: str = ""
    values: dict[str, str] = Field(default_factory=dict)


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    items: list[Item] = Field(default_factory=list)
    org: str = Field(min_length=1)
    rule: str | None = None
    link: str | None = None


def validate_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload checked against the schema above, in its canonical form (defaults filled in)."""
    try:
        return Payload.model_validate(payload).model_dump()
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}"
                             for e in exc.errors()[:5])
        raise ValidationError(f"notification payload is not valid ({problems}); expected "
                              "{title, items: [{title, text, values: {label: display string}}], org, "
                              "rule, link}") from None


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (no header injection), cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render_text(payload: dict[str, Any], *, with_title: bool = True) -> str:
    """Plain text: the title, then each item with its values, then rule, organisation and link."""
    p = Payload.model_validate(payload)
    lines = [p.title, ""] if with_title else []
    for item in p.items:
        lines.append(item.title)
        if item.text:
            lines.append(item.text)
        lines.extend(f"  {label}: {value}" for label, value in item.values.items())
        lines.append("")
    footer = f"Organisation: {p.org}" + (f" · rule: {p.rule}" if p.rule else "")
    lines.append(footer)
    if p.link:
        lines.append(p.link)
    return "\n".join(lines).strip() + "\n"


def render_html(payload: dict[str, Any]) -> str:
    """A small HTML version of :func:`render_text` for mail clients (everything escaped)."""
    p = Payload.model_validate(payload)
    e = html.escape
    parts = [f"<h2>{e(p.title)}</h2>"]
    for item in p.items:
        parts.append(f"<h3>{e(item.title)}</h3>")
        if item.text:
            parts.append(f"<p>{e(item.text)}</p>")
        if item.values:
            rows = "".join(f"<tr><th align=\"left\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in item.values.items())
            parts.append(f"<table>{rows}</table>")
    footer = f"Organisation: {e(p.org)}" + (f" · rule: {e(p.rule)}" if p.rule else "")
    parts.append(f"<p><small>{footer}</small></p>")
    if p.link:
        parts.append(f"<p><a href=\"{e(p.link, quote=True)}\">{e(p.link)}</a></p>")
    return "<html><body>" + "\n".join(parts) + "</body></html>\n"
