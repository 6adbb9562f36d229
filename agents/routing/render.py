"""Subject, text body and optional HTML part of a notification, from Jinja templates.

A template folder holds ``<template>/<channel>[.<locale>].txt.j2`` files with a ``subject``
and a ``body`` block, and for email optionally ``<template>/email[.<locale>].html.j2`` with a
``body`` block. Folders are searched in the order given: every candidate file of the first
folder comes before any file of the next, so a user folder overrides the built-in one even
when the built-in one has a more specific file. The HTML part comes from the folder and
locale that served the text, so the two parts never disagree in content or language.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

from agents.routing.links import drop_unsafe_links
from schemas.field_checks import LOCALE_PATTERN, MAX_LOCALE_LENGTH
from schemas.records import NotificationEvent
from schemas.template_names import template_name_problem

DEFAULT_CHANNEL = "default"

# No leading '.', so neither '..' nor hidden files can be reached.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")

# Bounded because template names come from producers: unknown names are cached too.
_LOOKUP_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    body: str
    html: str | None


class TemplateError(Exception):
    """Why an event cannot be rendered; the message is shown to whoever sent the event."""


@dataclass(frozen=True, slots=True)
class _Templates:
    text: jinja2.Template
    html: jinja2.Template | None


@dataclass(frozen=True, slots=True)
class _Environments:
    text: ImmutableSandboxedEnvironment
    html: ImmutableSandboxedEnvironment


_LookupKey = tuple[str, str, str | None]


class TemplateRenderer:
    """Renders events; each (template, channel, locale) is located and compiled only once.

    Template files are not re-read after their first use: edits take effect on restart.
    """

    def __init__(self, *, template_dirs: Sequence[Path]) -> None:
        self._dirs = tuple(Path(folder) for folder in template_dirs)
        # One pair of environments per folder, each loading from that folder first, so a
        # file is compiled from the folder it was found in and its {% extends %} and
        # {% include %} fall back only to the folders after it.
        self._envs = tuple(
            _Environments(
                text=_sandbox(jinja2.FileSystemLoader(self._dirs[index:]), autoescape=False),
                html=_sandbox(jinja2.FileSystemLoader(self._dirs[index:]), autoescape=True),
            )
            for index in range(len(self._dirs))
        )
        self._lookups: dict[_LookupKey, _Templates | str] = {}

    def render(self, event: NotificationEvent, channel: str, locale: str | None) -> Rendered:
        if event.template is None:
            return _from_title_and_body(event, channel)
        name = event.template
        # Validated at the door too; checked again because the name becomes a folder name.
        if problem := template_name_problem(name, "template name"):
            raise TemplateError(problem)
        _check_name(channel, "channel")
        if locale is not None and not _usable_locale(locale):
            # Validation refuses such locales at the door; one that slipped into stored
            # preferences must not make every event of that user unroutable.
            locale = None
        templates = self._templates(name, channel, locale)
        context = {
            **(event.data or {}),
            "event": event.asdict(),
            "user_id": event.user_id,
            "category": event.category,
            "priority": event.priority,
        }
        try:
            subject, body = _render_text(templates.text, context)
            html = _render_block(templates.html, "body", context) if templates.html else None
            if html is not None:
                html = drop_unsafe_links(html)
        except Exception as exc:
            # Whatever the template does with the event's data is the sender's problem to
            # fix, so it becomes a rejection reason rather than an internal error.
            detail = exc.message if isinstance(exc, jinja2.TemplateError) else repr(exc)
            raise TemplateError(f"template {name!r} for {channel}: {detail}") from exc
        return Rendered(subject=subject or None, body=body, html=html)

    def _templates(self, name: str, channel: str, locale: str | None) -> _Templates:
        key = (name, channel, locale)
        found = self._lookups.get(key)
        if found is None:
            found = self._locate(name, channel, locale)
            if len(self._lookups) >= _LOOKUP_CACHE_SIZE:
                del self._lookups[next(iter(self._lookups))]
            self._lookups[key] = found
        if isinstance(found, str):
            raise TemplateError(found)
        return found

    def _locate(self, name: str, channel: str, locale: str | None) -> _Templates | str:
        """The compiled templates, or the error message to raise for this lookup."""
        locales = _locale_chain(locale)
        # Language beats channel: a French default reads better than an English email.
        text_files = [
            (f"{candidate}{_suffix(loc)}.txt.j2", loc)
            for loc in locales
            for candidate in dict.fromkeys((channel, DEFAULT_CHANNEL))
        ]
        found = self._first_existing(name, text_files)
        if found is None:
            folders = ", ".join(str(folder / name) for folder in self._dirs)
            return (
                f"unknown template {name!r} for channel {channel!r} "
                f"(looked in {folders} for {', '.join(file for file, _ in text_files)})"
            )
        index, text_file, text_locale = found
        html_file = f"email{_suffix(text_locale)}.html.j2"
        has_html = channel == "email" and _is_file(self._dirs[index] / name / html_file)
        envs = self._envs[index]
        try:
            text = envs.text.get_template(f"{name}/{text_file}")
            html = envs.html.get_template(f"{name}/{html_file}") if has_html else None
        except jinja2.TemplateSyntaxError as exc:
            return f"template {name!r} for {channel}: {exc.name} line {exc.lineno}: {exc.message}"
        except jinja2.TemplateError as exc:
            return f"template {name!r} for {channel}: {exc.message}"
        for template in (text, html):
            if template is not None and "body" not in template.blocks:
                return f"template {name!r} for {channel}: {template.name} has no body block"
        return _Templates(text=text, html=html)

    def _first_existing(
        self, name: str, files: Sequence[tuple[str, str | None]]
    ) -> tuple[int, str, str | None] | None:
        """(folder index, file name, its locale) of the first candidate found."""
        for index, folder in enumerate(self._dirs):
            for filename, locale in files:
                if _is_file(folder / name / filename):
                    return index, filename, locale
        return None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        # Path.is_file lets "File name too long" and the like through; no such file here.
        return False


def _usable_locale(locale: str) -> bool:
    # Bounded: the locale is part of a file name.
    return len(locale) <= MAX_LOCALE_LENGTH and LOCALE_PATTERN.fullmatch(locale) is not None


def _sandbox(loader: jinja2.BaseLoader, *, autoescape: bool) -> ImmutableSandboxedEnvironment:
    # Immutable: one event's data is shared by the renders of all its channels.
    return ImmutableSandboxedEnvironment(
        loader=loader,
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _check_name(value: str, what: str) -> None:
    if not _SAFE_NAME.fullmatch(value):
        raise TemplateError(
            f"invalid {what} {value!r}: {what} may only contain letters, digits, "
            "'-', '_' and '.', and may not start with '.'"
        )


def _locale_chain(locale: str | None) -> list[str | None]:
    """``pt-BR`` gives ``pt-BR``, ``pt``, then no locale."""
    if not locale:
        return [None]
    parts = locale.replace("_", "-").split("-")
    return [*("-".join(parts[:count]) for count in range(len(parts), 0, -1)), None]


def _suffix(locale: str | None) -> str:
    return f".{locale}" if locale else ""


def _render_text(template: jinja2.Template, context: dict[str, Any]) -> tuple[str, str]:
    subject = _render_block(template, "subject", context) if "subject" in template.blocks else ""
    return subject, _render_block(template, "body", context)


def _render_block(template: jinja2.Template, block: str, context: dict[str, Any]) -> str:
    chunks: Iterator[str] = template.blocks[block](template.new_context(context))
    return "".join(chunks).strip()


def _from_title_and_body(event: NotificationEvent, channel: str) -> Rendered:
    if event.body is None:
        raise TemplateError("event has neither a template nor a title and body")
    html = _paragraphs_html(event.body) if channel == "email" else None
    return Rendered(subject=event.title, body=event.body, html=html)


def _paragraphs_html(text: str) -> str:
    paragraphs = _PARAGRAPH_BREAK.split(text.strip())
    return "\n".join(
        "<p>" + str(escape(paragraph)).replace("\n", "<br>\n") + "</p>" for paragraph in paragraphs
    )
