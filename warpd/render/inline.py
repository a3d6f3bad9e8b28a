"""Inline markdown of one line, decided a character at a time.

``*``/``_`` emphasis, ``**``/``__`` strong, ``~~`` strike and backtick code
spans use CommonMark's flanking rules to decide whether a delimiter opens or
closes, but an opener needs no closer (the style runs to the closer or the
end of the line). ``\\`` escapes punctuation.

Links: ``[text](target "title")`` (the title is dropped, parentheses in
the target may nest), ``<scheme:…>`` and ``<name@host>`` autolinks, and bare
``http://``, ``https://`` and ``www.`` URLs (trailing punctuation and
unbalanced closing parentheses left out, as GFM does). A link is shown in
colour, as an OSC 8 hyperlink when its target is a plain http(s)/mailto URL,
and its target is written, dimmed, after the text unless the text already
says it: the target is what a click opens, so it is never hidden — piped
output, NO_COLOR and terminals without OSC 8 keep it, and a text that looks
like one URL cannot point at another unseen. The target shown is the one
the hyperlink opens (non-ASCII percent-encoded, so look-alike letters show).

Code spans keep their backticks when there is no colour to mark them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from warpd.render.style import BLUE, BOLD, DIM, ITALIC, REVERSE, STRIKE, UNDERLINE, YELLOW, Style
from warpd.render.untrusted import safe_link_target, visible_form

# A ``[`` or ``<`` that has not become a link after this many characters is literal.
LINK_LIMIT = 500
# A bare URL longer than this is left as text.
URL_LIMIT = 2000

_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# What may come before a bare URL (GFM: the start, whitespace, ``*_~(``; quotes too).
_URL_OPENERS = frozenset(" *_~(\"'")
_URL_PREFIXES = ("https://", "http://", "www.")
_URL_TRAILING = frozenset("?!.,:*_~'\";")
_AUTOLINK = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?")
# The part between ``](`` and ``)``: a target, then an optional title.
_DESTINATION = re.compile(
    r"\s*(?:<(?P<angled>[^<>\n]*)>|(?P<bare>[^\s<>]+))"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*"
)
# What such a part may look like while it is still growing.
_DESTINATION_PREFIX = re.compile(
    r"\s*(?:<[^<>\n]*>?|[^\s<>]*)(?:\s+(?:\"[^\"]*\"?|'[^']*'?|\([^()]*\)?)?)?\s*"
)
_SAME_PLACE = re.compile(r"^(?:https?://|mailto:)?(?:www\.)?", re.IGNORECASE)


def _is_punct(ch: str) -> bool:
    if ch in _ASCII_PUNCT:
        return True
    return ch > "\x7f" and unicodedata.category(ch)[0] in "PS"


def _same_place(text: str, target: str) -> bool:
    """Whether a link's text already says where it goes (scheme, ``www.``, a final ``/`` aside)."""

    def bare(url: str) -> str:
        return _SAME_PLACE.sub("", url.strip()).rstrip("/").lower()

    return bare(text) == bare(target)


class InlineMarkdown:
    """Inline markup of one line: characters in, styled characters out to ``out``.

    Call :meth:`feed` per character (never a newline; pass a character that
    must be shown visibly to :meth:`feed_visible` with its visible form) and
    :meth:`end` at the end of the line. :meth:`held` gives the characters
    not yet decided (a delimiter run, a link in progress) for previews.
    ``marks`` keeps the backticks of code spans (no colour to show them).
    """

    def __init__(self, out: Callable[[str, Style], None], base: Style, *, marks: bool) -> None:
        self._out = out
        self._base = base
        self._marks = marks
        self._bold = False
        self._italic = False
        self._strike = False
        self._code = 0
        self._run_char = ""
        self._run_len = 0
        self._prev = " "
        self._escape = False
        self._link: list[str] | None = None
        self._link_close = -1
        self._angle: list[str] | None = None
        self._url: list[str] | None = None

    def _style(self) -> Style:
        attrs = (
            (BOLD if self._bold else 0)
            | (ITALIC if self._italic else 0)
            | (STRIKE if self._strike else 0)
        )
        return self._base.plus(attrs, YELLOW if self._code else None)

    def _emit(self, ch: str) -> None:
        self._out(ch, self._style())
        self._prev = ch

    def feed(self, ch: str) -> None:
        """Add one (safe) character of the line."""
        if self._link is not None:
            self._link.append(ch)
            self._grow_link()
            return
        if self._angle is not None:
            self._grow_angle(ch)
            return
        if self._url is not None:
            if not self._grow_url(ch):
                return
        if self._escape:
            self._escape = False
            if ch in _ASCII_PUNCT:
                self._emit(ch)
                return
            self._emit("\\")
        if self._run_len:
            if ch == self._run_char:
                self._run_len += 1
                return
            self._resolve_run(ch)
        if self._code:
            if ch == "`":
                self._run_char, self._run_len = ch, 1
            else:
                self._emit(ch)
            return
        if ch in "*_~`":
            self._run_char, self._run_len = ch, 1
        elif ch == "\\":
            self._escape = True
        elif ch == "[":
            self._link = []
            self._link_close = -1
        elif ch == "<":
            self._angle = []
        elif ch in "hHwW" and self._prev in _URL_OPENERS:
            self._url = [ch]
        else:
            self._emit(ch)

    def feed_untrusted(self, ch: str) -> None:
        """Add one character of LLM text: a tab as a space, a control (or anything
        :func:`~warpd.render.untrusted.visible_form` names) in its visible form."""
        if ch == "\t":
            self.feed(" ")
            return
        form = visible_form(ch)
        if form is None:
            self.feed(ch)
        else:
            self.feed_visible(form)

    def feed_visible(self, form: str) -> None:
        """Add a character that must be shown as ``form`` (a neutralised control)."""
        self._settle("x")
        style = self._style().plus(REVERSE)
        for ch in form:
            self._out(ch, style)
        self._prev = "x"

    def end(self) -> None:
        """End the line: undecided characters become literal, styles reset."""
        self._settle(None)
        self._bold = self._italic = self._strike = False
        self._code = 0
        self._prev = " "

    def held(self) -> list[tuple[str, Style]]:
        """The characters not yet decided, as they would show if the line ended now."""
        style = self._style()
        held: list[tuple[str, Style]] = []
        if self._escape:
            held.append(("\\", style))
        if self._run_len:
            held.extend((self._run_char, style) for _ in range(self._run_len))
        if self._link is not None:
            held.append(("[", style))
            held.extend((ch, style) for ch in self._link)
        if self._angle is not None:
            held.append(("<", style))
            held.extend((ch, style) for ch in self._angle)
        if self._url is not None:
            held.extend((ch, style) for ch in self._url)
        return held

    def _settle(self, next_char: str | None) -> None:
        while True:
            if self._link is not None:
                self._fail_link()
            elif self._angle is not None:
                self._fail_angle()
            elif self._url is not None:
                self._end_url()
            elif self._escape:
                self._escape = False
                self._emit("\\")
            elif self._run_len:
                self._resolve_run(next_char)
            else:
                return

    # -- delimiter runs -----------------------------------------------------

    def _resolve_run(self, nxt: str | None) -> None:
        c, n = self._run_char, self._run_len
        self._run_len = 0
        if c == "`":
            self._resolve_backticks(n)
            return
        prev = self._prev
        ws_next = nxt is None or nxt.isspace()
        ws_prev = prev.isspace()
        p_next = nxt is not None and _is_punct(nxt)
        p_prev = _is_punct(prev)
        left = not ws_next and (not p_next or ws_prev or p_prev)
        right = not ws_prev and (not p_prev or ws_next or p_next)
        if c == "_":
            can_open = left and (not right or p_prev)
            can_close = right and (not left or p_next)
        else:
            can_open, can_close = left, right
        toggled = False
        if c == "~":
            if n == 2:
                if self._strike and can_close:
                    self._strike, toggled = False, True
                elif not self._strike and can_open:
                    self._strike, toggled = True, True
        elif n == 1:
            if self._italic and can_close:
                self._italic, toggled = False, True
            elif not self._italic and can_open:
                self._italic, toggled = True, True
        elif n == 2:
            if self._bold and can_close:
                self._bold, toggled = False, True
            elif not self._bold and can_open:
                self._bold, toggled = True, True
        elif n == 3:
            if self._bold and self._italic and can_close:
                self._bold = self._italic = False
                toggled = True
            elif not self._bold and not self._italic and can_open:
                self._bold = self._italic = True
                toggled = True
        if toggled:
            self._prev = c
            return
        for _ in range(n):
            self._emit(c)

    def _resolve_backticks(self, n: int) -> None:
        if self._code and self._code != n:
            for _ in range(n):
                self._emit("`")
            return
        opening = not self._code
        if opening:
            self._code = n
        if self._marks:
            for _ in range(n):
                self._emit("`")
        if not opening:
            self._code = 0
        self._prev = "`"

    # -- links ----------------------------------------------------------------

    def _show_link(self, text: str, target: str) -> None:
        """``text`` as a link to ``target``, the target after it unless the text says it."""
        safe = safe_link_target(target)
        style = self._style()
        link = style.plus(UNDERLINE, BLUE)._replace(link=safe or "")
        shown_target = safe or target
        for ch in text or shown_target:
            self._out(ch, link)
        if text and not _same_place(text, shown_target):
            dim = self._base.plus(DIM)
            self._out(" ", style)
            for ch in "(" + shown_target + ")":
                self._out(ch, dim)
        self._prev = "a"

    def _grow_link(self) -> None:
        buf = self._link
        assert buf is not None
        ch = buf[-1]
        if len(buf) > LINK_LIMIT:
            self._fail_link()
        elif self._link_close < 0:
            if ch == "]":
                self._link_close = len(buf) - 1
            elif ch == "[":
                self._fail_link()
        elif len(buf) == self._link_close + 2:
            if ch != "(":
                self._fail_link()
        elif ch == ")":
            part = "".join(buf[self._link_close + 2 : -1])
            found = _DESTINATION.fullmatch(part)
            bare = found.group("bare") if found else None
            if found is not None and (bare is None or bare.count("(") == bare.count(")")):
                text = "".join(buf[: self._link_close])
                self._link = None
                self._show_link(text, found.group("angled") if bare is None else bare)
            elif part.count("(") <= part.count(")") and part.count('"') % 2 == 0:
                # Neither a target still inside parentheses nor an open title.
                self._fail_link()
        elif ch.isspace() or ch in "\"'":
            part = "".join(buf[self._link_close + 2 :])
            if _DESTINATION_PREFIX.fullmatch(part) is None:
                self._fail_link()

    def _fail_link(self) -> None:
        buf = self._link or []
        self._link = None
        self._emit("[")
        for ch in buf:
            self.feed(ch)

    def _grow_angle(self, ch: str) -> None:
        buf = self._angle
        assert buf is not None
        if ch != ">":
            buf.append(ch)
            if ch.isspace() or ch == "<" or len(buf) > LINK_LIMIT:
                self._fail_angle()
            return
        content = "".join(buf)
        if _AUTOLINK.fullmatch(content):
            self._angle = None
            self._show_link(content, content)
        elif _EMAIL.fullmatch(content):
            self._angle = None
            self._show_link(content, "mailto:" + content)
        else:
            buf.append(ch)
            self._fail_angle()

    def _fail_angle(self) -> None:
        buf = self._angle or []
        self._angle = None
        self._emit("<")
        for ch in buf:
            self.feed(ch)

    def _grow_url(self, ch: str) -> bool:
        """Take ``ch`` into the bare URL being read; ``True`` if ``ch`` is left to the caller."""
        buf = self._url
        assert buf is not None
        if ch.isspace() or ch == "<" or len(buf) >= URL_LIMIT:
            self._end_url()
            return True
        if len(buf) < 8:
            candidate = "".join(buf).lower() + ch.lower()
            if any(p.startswith(candidate) or candidate.startswith(p) for p in _URL_PREFIXES):
                buf.append(ch)
                return False
            # Not a URL after all: what was held is ordinary text.
            self._url = None
            for held in buf:
                self._emit(held)
            return True
        buf.append(ch)
        return False

    def _end_url(self) -> None:
        buf = self._url or []
        self._url = None
        url = "".join(buf)
        end = len(url)
        while end and (
            url[end - 1] in _URL_TRAILING
            or (url[end - 1] == ")" and url.count("(", 0, end) < url.count(")", 0, end))
        ):
            end -= 1
        url, rest = url[:end], url[end:]
        prefix = next((p for p in _URL_PREFIXES if url.lower().startswith(p)), None)
        if prefix is None or len(url) == len(prefix) or len(buf) >= URL_LIMIT:
            for ch in url:
                self._emit(ch)
        else:
            self._show_link(url, url if prefix != "www." else "http://" + url)
        for ch in rest:
            self.feed(ch)
