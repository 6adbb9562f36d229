from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.routing.render import Rendered, TemplateError, TemplateRenderer
from schemas.records import NotificationEvent

BUILTIN_TEMPLATES = Path(__file__).parents[3] / "pipeline" / "templates"


def write(folder: Path, relative: str, text: str) -> None:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def tagged(tag: str) -> str:
    """A template whose output says which file served it."""
    return (
        f"{{% block subject %}}{tag} subject{{% endblock %}}{{% block body %}}{tag}{{% endblock %}}"
    )


def event(**fields: Any) -> NotificationEvent:
    base: dict[str, Any] = {
        "event_id": "evt-1",
        "user_id": "ana",
        "category": "account",
        "priority": "normal",
        "template": "welcome",
        "data": {"name": "Ana"},
    }
    return NotificationEvent(**{**base, **fields})


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    return tmp_path / "user"


@pytest.fixture
def builtin_dir(tmp_path: Path) -> Path:
    return tmp_path / "builtin"


@pytest.fixture
def renderer(user_dir: Path, builtin_dir: Path) -> TemplateRenderer:
    user_dir.mkdir()
    builtin_dir.mkdir()
    return TemplateRenderer(template_dirs=[user_dir, builtin_dir])


@pytest.mark.parametrize(
    ("locale", "served_by"),
    [
        ("pt-BR", "email.pt-BR"),
        ("pt_BR", "email.pt-BR"),
        ("pt-PT", "email.pt"),
        ("pt", "email.pt"),
        ("de", "email"),
        (None, "email"),
    ],
)
def test_locale_falls_back_from_region_to_language_to_none(
    renderer: TemplateRenderer, builtin_dir: Path, locale: str | None, served_by: str
) -> None:
    for name in ("email.pt-BR", "email.pt", "email"):
        write(builtin_dir, f"welcome/{name}.txt.j2", tagged(name))

    assert renderer.render(event(), "email", locale).body == served_by


def test_language_wins_over_channel(renderer: TemplateRenderer, builtin_dir: Path) -> None:
    write(builtin_dir, "welcome/email.txt.j2", tagged("english email"))
    write(builtin_dir, "welcome/default.fr.txt.j2", tagged("french default"))

    assert renderer.render(event(), "email", "fr-CA").body == "french default"


def test_channel_falls_back_to_default(renderer: TemplateRenderer, builtin_dir: Path) -> None:
    write(builtin_dir, "welcome/email.txt.j2", tagged("email"))
    write(builtin_dir, "welcome/default.txt.j2", tagged("default"))

    assert renderer.render(event(), "email", None).body == "email"
    assert renderer.render(event(), "sms", None).body == "default"


def test_user_folder_overrides_builtin_even_a_more_specific_file(
    renderer: TemplateRenderer, user_dir: Path, builtin_dir: Path
) -> None:
    write(builtin_dir, "welcome/email.txt.j2", tagged("builtin email"))
    write(builtin_dir, "welcome/email.html.j2", "{% block body %}<p>builtin</p>{% endblock %}")
    write(builtin_dir, "receipt/default.txt.j2", tagged("builtin receipt"))
    write(user_dir, "welcome/default.txt.j2", tagged("user default"))

    welcome = renderer.render(event(), "email", None)
    receipt = renderer.render(event(template="receipt"), "email", None)

    # The built-in HTML part would contradict the user's text, so it is not used.
    assert welcome == Rendered(subject="user default subject", body="user default", html=None)
    assert receipt.body == "builtin receipt"


def test_html_part_comes_from_the_locale_of_the_text(
    renderer: TemplateRenderer, builtin_dir: Path
) -> None:
    write(builtin_dir, "welcome/email.txt.j2", tagged("english"))
    write(builtin_dir, "welcome/email.fr.txt.j2", tagged("french"))
    write(builtin_dir, "welcome/email.html.j2", "{% block body %}<p>english</p>{% endblock %}")

    french = renderer.render(event(), "email", "fr")
    english = renderer.render(event(), "email", "en")

    assert (french.body, french.html) == ("french", None)
    assert (english.body, english.html) == ("english", "<p>english</p>")


def test_html_is_autoescaped_and_text_is_not(renderer: TemplateRenderer, builtin_dir: Path) -> None:
    write(builtin_dir, "welcome/email.txt.j2", "{% block body %}Hi {{ name }}{% endblock %}")
    write(
        builtin_dir, "welcome/email.html.j2", "{% block body %}<p>Hi {{ name }}</p>{% endblock %}"
    )
    hostile = event(data={"name": "<script>alert(1)</script>"})

    rendered = renderer.render(hostile, "email", None)

    assert rendered.body == "Hi <script>alert(1)</script>"
    assert rendered.html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>"


def test_html_part_is_only_for_email(renderer: TemplateRenderer, builtin_dir: Path) -> None:
    write(builtin_dir, "welcome/default.txt.j2", tagged("default"))
    write(builtin_dir, "welcome/email.html.j2", "{% block body %}<p>html</p>{% endblock %}")

    assert renderer.render(event(), "push", None).html is None
    assert renderer.render(event(), "email", None).html == "<p>html</p>"


def test_context_has_data_event_and_routing_fields(
    renderer: TemplateRenderer, builtin_dir: Path
) -> None:
    write(
        builtin_dir,
        "welcome/default.txt.j2",
        "{% block subject %}  {% endblock %}"
        "{% block body %}\n  {{ name }} {{ user_id }} {{ category }} {{ priority }}"
        " {{ event.event_id }}\n{% endblock %}",
    )

    rendered = renderer.render(event(), "push", None)

    assert rendered == Rendered(subject=None, body="Ana ana account normal evt-1", html=None)


def test_undefined_variable_is_named(renderer: TemplateRenderer, builtin_dir: Path) -> None:
    write(builtin_dir, "welcome/email.txt.j2", tagged("{{ name }}"))

    with pytest.raises(TemplateError) as caught:
        renderer.render(event(data={}), "email", None)

    assert str(caught.value) == "template 'welcome' for email: 'name' is undefined"


def test_unknown_template_says_where_it_looked(renderer: TemplateRenderer, user_dir: Path) -> None:
    with pytest.raises(TemplateError) as caught:
        renderer.render(event(template="nope"), "sms", "fr")

    message = str(caught.value)
    assert message.startswith("unknown template 'nope' for channel 'sms' (looked in ")
    assert str(user_dir / "nope") in message
    assert "sms.fr.txt.j2, default.fr.txt.j2, sms.txt.j2, default.txt.j2" in message


@pytest.mark.parametrize("name", ["../secrets", "..", ".hidden", "a/b", "a\\b", "", "wel come"])
def test_unsafe_template_names_are_refused(renderer: TemplateRenderer, name: str) -> None:
    with pytest.raises(TemplateError, match="may only contain letters, digits"):
        renderer.render(event(template=name), "email", None)


def test_over_long_names_are_refused_before_the_file_system(renderer: TemplateRenderer) -> None:
    # Past 255 bytes the file system answers OSError(36), which is not "no such template".
    with pytest.raises(TemplateError, match="at most 128 characters"):
        renderer.render(event(template="t" * 300), "email", None)
    with pytest.raises(TemplateError, match=r"must not contain '\.\.'"):
        renderer.render(event(template="a..b"), "email", None)


def test_an_over_long_locale_falls_back_instead_of_failing(
    renderer: TemplateRenderer, builtin_dir: Path
) -> None:
    write(builtin_dir, "welcome/default.txt.j2", tagged("default"))

    assert renderer.render(event(), "email", "en" + "-abcdefgh" * 40).body == "default"


def test_a_user_template_cannot_link_to_a_script_from_event_data(
    renderer: TemplateRenderer, user_dir: Path
) -> None:
    write(user_dir, "promo/email.txt.j2", "{% block body %}{{ url }}{% endblock %}")
    write(
        user_dir,
        "promo/email.html.j2",
        '{% block body %}<a href="{{ url }}" class="cta">Open</a>'
        "<img src='{{ url }}'>{% endblock %}",
    )

    hostile = renderer.render(
        event(template="promo", data={"url": "javascript:alert(1)"}), "email", None
    )
    assert hostile.html == '<a class="cta">Open</a><img>'
    # The text part is not a link anywhere; it keeps what was sent.
    assert hostile.body == "javascript:alert(1)"
    fine = renderer.render(
        event(template="promo", data={"url": "https://e.example/"}), "email", None
    )
    assert (
        fine.html
        == '<a href="https://e.example/" class="cta">Open</a><img src=\'https://e.example/\'>'
    )


@pytest.mark.parametrize("locale", ["../../etc", "en/..", "..", "en-", "fr.txt"])
def test_unsafe_locales_never_reach_the_file_system(
    renderer: TemplateRenderer, builtin_dir: Path, locale: str
) -> None:
    write(builtin_dir, "welcome/default.txt.j2", tagged("default"))
    write(builtin_dir, "etc/passwd", "root")

    assert renderer.render(event(), "email", locale).body == "default"


def test_title_and_body_need_no_template(tmp_path: Path) -> None:
    renderer = TemplateRenderer(template_dirs=[tmp_path])
    plain = event(template=None, data=None, title="Hello", body="Line <1>\nline 2\n\nNext")

    email = renderer.render(plain, "email", "fr")
    sms = renderer.render(plain, "sms", None)

    assert email == Rendered(
        subject="Hello",
        body="Line <1>\nline 2\n\nNext",
        html="<p>Line &lt;1&gt;<br>\nline 2</p>\n<p>Next</p>",
    )
    assert sms == Rendered(subject="Hello", body="Line <1>\nline 2\n\nNext", html=None)


def test_event_without_template_or_body_is_refused(tmp_path: Path) -> None:
    renderer = TemplateRenderer(template_dirs=[tmp_path])

    with pytest.raises(TemplateError, match="neither a template nor a title and body"):
        renderer.render(event(template=None, title="Hello"), "email", None)


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__",
        "name.__class__.__mro__[1].__subclasses__()",
        "event.__init__.__globals__",
    ],
)
def test_sandbox_refuses_python_internals(
    renderer: TemplateRenderer, builtin_dir: Path, expression: str
) -> None:
    write(builtin_dir, "welcome/default.txt.j2", tagged(f"{{{{ {expression} }}}}"))

    with pytest.raises(TemplateError, match=r"^template 'welcome' for push: .*unsafe"):
        renderer.render(event(), "push", None)


def test_templates_cannot_mutate_event_data(renderer: TemplateRenderer, builtin_dir: Path) -> None:
    write(builtin_dir, "welcome/default.txt.j2", tagged("{{ tags.append('x') }}"))
    data = {"name": "Ana", "tags": ["a"]}

    with pytest.raises(TemplateError, match="unsafe"):
        renderer.render(event(data=data), "push", None)
    assert data["tags"] == ["a"]


def test_runtime_errors_become_template_errors(
    renderer: TemplateRenderer, builtin_dir: Path
) -> None:
    write(builtin_dir, "welcome/default.txt.j2", tagged("{{ count / 0 }}"))

    with pytest.raises(TemplateError, match=r"^template 'welcome' for push: ZeroDivisionError"):
        renderer.render(event(data={"count": 1}), "push", None)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{% block subject %}x{% endblock %}", "has no body block"),
        ("{% block body %}{{ name {% endblock %}", "line 1"),
    ],
)
def test_broken_templates_are_reported(
    renderer: TemplateRenderer, builtin_dir: Path, source: str, problem: str
) -> None:
    write(builtin_dir, "welcome/default.txt.j2", source)

    with pytest.raises(TemplateError, match=r"^template 'welcome' for push: ") as caught:
        renderer.render(event(), "push", None)
    assert problem in str(caught.value)


def test_lookups_are_cached_after_first_render(
    renderer: TemplateRenderer, builtin_dir: Path
) -> None:
    write(builtin_dir, "welcome/default.txt.j2", tagged("{{ name }}"))
    assert renderer.render(event(), "push", "fr").body == "Ana"

    (builtin_dir / "welcome" / "default.txt.j2").unlink()

    assert renderer.render(event(data={"name": "Bo"}), "push", "fr").body == "Bo"


@pytest.mark.parametrize(
    ("template", "channel", "locale", "data", "has_html"),
    [
        ("welcome", "email", None, {"name": "Ana", "action_url": "https://e.com/a?b=1&c=2"}, True),
        ("welcome", "email", "fr-FR", {"name": "Ana"}, False),
        ("welcome", "sms", None, {"name": "Ana"}, False),
        ("welcome", "push", "de", {"name": "Ana"}, False),
        ("security_alert", "email", None, {"device": "Firefox", "location": "Lisbon"}, True),
        ("security_alert", "sms", None, {}, False),
        (
            "digest",
            "email",
            None,
            {
                "count": 2,
                "events": [{"subject": "A"}, {"title": "B"}],
                "more": 0,
                "categories": [
                    {
                        "name": "billing",
                        "count": 2,
                        "events": [
                            {"subject": "A", "body": "a"},
                            {"subject": None, "title": "B", "body": ""},
                        ],
                    }
                ],
            },
            False,
        ),
    ],
)
def test_builtin_templates_render(
    template: str, channel: str, locale: str | None, data: dict[str, Any], has_html: bool
) -> None:
    renderer = TemplateRenderer(template_dirs=[BUILTIN_TEMPLATES])

    rendered = renderer.render(event(template=template, data=data), channel, locale)

    assert rendered.body
    assert "{{" not in rendered.body
    assert (rendered.html is not None) == has_html
    if rendered.html is not None:
        assert rendered.html.startswith("<p>")
