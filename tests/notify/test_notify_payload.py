import pytest
from notify_helpers import payload

from workbench.errors import ValidationError
from workbench.notify.payload import render_html, render_text, validate_payload


def test_canonical_form_fills_defaults():
    p = validate_payload({"title": "Spend spike", "org": "acme", "items": [{"title": "Meta"}]})
    assert p == {"title": "Spend spike", "org": "acme", "rule": None, "link": None,
                 "items": [{"title": "Meta", "text": "", "values": {}}]}


@pytest.mark.parametrize("bad, fragment", [
    ({"org": "acme"}, "title: Field required"),
    ({"title": "t", "org": "acme", "severity": "high"}, "severity: Extra inputs are not permitted"),
    ({"title": "t", "org": "acme", "items": [{"title": "x", "values": {"CPA": 41.2}}]}, "items.0.values.CPA"),
    ({"title": "", "org": "acme"}, "title: String should have at least 1 character"),
])
def test_invalid_payloads_say_what_is_wrong(bad, fragment):
    with pytest.raises(ValidationError, match="notification payload is not valid") as info:
        validate_payload(bad)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_text_and_html_carry_every_item():
    p = payload(2)
    text = render_text(p)
    assert text.startswith("2 campaigns above target CPA\n")
    for fragment in ("Campaign 1", "Campaign 2", "  CPA: $42.20", "rule: cpa-above-target",
                     "https://workbench.example/acme/alerts"):
        assert fragment in text
    html = render_html(payload(1, title="<script>alert(1)</script>"))
    assert "<script>" not in html and "&lt;script&gt;" in html and "<td>$41.20</td>" in html
