"""Fenced code, highlighted by Pygments line by line as the lines arrive.

A kept lexer library (hundreds of languages, maintained by others) beats
anything we would write, but Pygments lexes whole texts: a streamed block
would have to be lexed again from its start on every line, O(n²). So each
line is lexed once, when it is complete, starting from the lexer's state at
the end of the line before (its stack of regex states), and the state at its
own end is kept for the next line. Committed lines are never lexed again;
the unfinished line is lexed for the live tail only, from the same saved
state, and only while it is short.

How the state is carried depends on the kind of lexer:

- ``RegexLexer`` (most languages): :func:`_lex_regex` runs Pygments' own
  matching loop over the lexer's compiled rules, keeping the state stack it
  ends with. Pygments' ``get_tokens_unprocessed(text, stack)`` takes a start
  state but does not give the end one back. Lexers that post-process that
  method's tokens (C's standard types, PHP's builtins) lose that extra
  colouring here, never text.
- ``ExtendedRegexLexer``: its public ``LexerContext`` carries the state
  (unless the lexer brings a context of its own, as YAML's does).
- any other lexer (JSON, YAML, console sessions, …): each line is lexed on
  its own.

A construct that a lexer matches with one regex across lines (C's
``/* … */`` comment) is seen one line at a time, so its later lines may be
coloured as code; the text is the same either way.

Every character of the code is shown by the caller's rules for untrusted
text: a control character inside a token is shown in its visible form, in
reverse video, never sent. Lines longer than ``MAX_LEXED_LINE`` characters
are not lexed (some lexers' regexes are slow on long adversarial input), nor
is anything when colours are off.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pygments.lexer import ExtendedRegexLexer, Lexer, LexerContext, RegexLexer
from pygments.lexers import get_lexer_by_name
from pygments.styles import get_style_by_name
from pygments.token import Error, Text, Whitespace, _TokenType
from pygments.util import ClassNotFound

from warpd.render.style import BOLD, CYAN, ITALIC, UNDERLINE, Row, Segment, Style, rgb
from warpd.render.untrusted import visible_form

DEFAULT_THEME = "monokai"
MAX_LEXED_LINE = 2000
_TAB = "    "

Token = tuple[Any, str]
Stack = tuple[str, ...]
_ROOT: Stack = ("root",)


@lru_cache(maxsize=64)
def lexer_for(language: str) -> Lexer | None:
    """The Pygments lexer for a fence's language name (``python``, ``sh``…), or ``None``."""
    if not language or len(language) > 40:
        return None
    try:
        lexer: Lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None
    return lexer


def theme_exists(name: str) -> bool:
    """Whether Pygments has a style called ``name``."""
    try:
        get_style_by_name(name)
    except ClassNotFound:
        return False
    return True


@lru_cache(maxsize=16)
def _theme(name: str) -> dict[Any, Style]:
    """Styles per token type of the Pygments style ``name`` (an unknown name: the default)."""
    try:
        theme = get_style_by_name(name)
    except ClassNotFound:
        theme = get_style_by_name(DEFAULT_THEME)
    # The theme's plain text colour is the terminal's own default colour, so
    # plain code reads on any background.
    text = theme.style_for_token(Text)["color"]
    styles: dict[Any, Style] = {}
    for ttype, spec in theme:
        attrs = (
            (BOLD if spec["bold"] else 0)
            | (ITALIC if spec["italic"] else 0)
            | (UNDERLINE if spec["underline"] else 0)
        )
        colour = spec["color"]
        styles[ttype] = Style(attrs, rgb(colour) if colour and colour != text else 0)
    return styles


def _lex_regex(lexer: RegexLexer, text: str, stack: Stack) -> tuple[list[Token], Stack]:
    """Pygments' ``RegexLexer.get_tokens_unprocessed`` loop, also returning the end state."""
    tokendefs = lexer._tokens
    statestack = list(stack)
    statetokens = tokendefs[statestack[-1]]
    tokens: list[Token] = []
    pos = 0
    while True:
        for rexmatch, action, new_state in statetokens:
            m = rexmatch(text, pos)
            if not m:
                continue
            if action is not None:
                if type(action) is _TokenType:
                    tokens.append((action, m.group()))
                else:
                    tokens.extend((t, v) for _, t, v in action(lexer, m))
            pos = m.end()
            if new_state is not None:
                if isinstance(new_state, tuple):
                    for state in new_state:
                        if state == "#pop":
                            if len(statestack) > 1:
                                statestack.pop()
                        elif state == "#push":
                            statestack.append(statestack[-1])
                        else:
                            statestack.append(state)
                elif isinstance(new_state, int):
                    if abs(new_state) >= len(statestack):
                        del statestack[1:]
                    else:
                        del statestack[new_state:]
                elif new_state == "#push":
                    statestack.append(statestack[-1])
                statetokens = tokendefs[statestack[-1]]
            break
        else:
            if pos >= len(text):
                break
            if text[pos] == "\n":
                statestack = ["root"]
                statetokens = tokendefs["root"]
                tokens.append((Whitespace, "\n"))
            else:
                tokens.append((Error, text[pos]))
            pos += 1
    return tokens, tuple(statestack)


def lex_line(lexer: Lexer, line: str, stack: Stack) -> tuple[list[Token], Stack]:
    """The tokens of one line (its newline included in the lexing, not in the tokens)
    and the lexer's state after it."""
    text = line + "\n"
    own_loop = type(lexer).get_tokens_unprocessed is ExtendedRegexLexer.get_tokens_unprocessed
    if isinstance(lexer, ExtendedRegexLexer) and own_loop:
        context = LexerContext(text, 0, stack=list(stack))
        tokens = [(t, v) for _, t, v in lexer.get_tokens_unprocessed(context=context)]
        end: Stack = tuple(context.stack)
    elif isinstance(lexer, RegexLexer) and not isinstance(lexer, ExtendedRegexLexer):
        tokens, end = _lex_regex(lexer, text, stack)
    else:
        tokens = [(t, v) for _, t, v in lexer.get_tokens_unprocessed(text)]
        end = _ROOT
    return tokens, end


class CodeHighlighter:
    """The lines of one fenced block as rows, highlighted for ``language`` when it is known.

    :meth:`line` takes each complete line (no newline) and returns its row;
    :meth:`preview` shows an unfinished line without changing the state.
    With ``colored`` false, or an unknown language, code is one colour.
    """

    def __init__(
        self, language: str, base: Style, escape: Style, *, colored: bool, theme: str
    ) -> None:
        self._lexer = lexer_for(language.lower()) if colored else None
        self._styles = _theme(theme) if self._lexer is not None else {}
        self._base = base
        self._plain = base if self._lexer is not None else base.plus(0, CYAN)
        self._escape = escape
        self._stack: Stack = _ROOT

    def line(self, text: str) -> Row:
        """The row of a complete line; the lexer's state moves past it."""
        row, self._stack = self._render(text, self._stack)
        return row

    def preview(self, text: str) -> Row:
        """The row of an unfinished line, from the same state (nothing changes)."""
        return self._render(text, self._stack)[0]

    def _render(self, text: str, stack: Stack) -> tuple[Row, Stack]:
        lexer = self._lexer
        if lexer is None or len(text) > MAX_LEXED_LINE:
            return self._segments([(None, text)]), stack
        try:
            tokens, end = lex_line(lexer, text, stack)
        except Exception:
            # A lexer bug must not lose the code: show it uncoloured.
            return self._segments([(None, text)]), _ROOT
        # The newline lexed with the line is not part of it.
        while tokens and tokens[-1][1].endswith("\n"):
            ttype, value = tokens.pop()
            if value[:-1]:
                tokens.append((ttype, value[:-1]))
                break
        return self._segments(tokens), end

    def _style(self, ttype: Any) -> Style:
        if ttype is None:
            return self._plain
        style = self._styles.get(ttype)
        while style is None and ttype.parent is not None:
            ttype = ttype.parent
            style = self._styles.get(ttype)
        if style is None:
            return self._base
        return self._base.plus(style.attrs, style.fg or None)

    def _segments(self, tokens: list[tuple[Any, str]]) -> Row:
        row: Row = []
        for ttype, value in tokens:
            style = self._style(ttype)
            row.extend(_neutralised(value, style, self._escape))
        return row


def _neutralised(value: str, style: Style, escape: Style) -> list[Segment]:
    """``value`` as segments: tabs as spaces, controls in their visible form."""
    out: list[Segment] = []
    start = 0
    for i, ch in enumerate(value):
        if ch == "\t":
            replacement, replacement_style = _TAB, style
        else:
            form = visible_form(ch)
            if form is None:
                continue
            replacement, replacement_style = form, escape
        if i > start:
            out.append((value[start:i], style))
        out.append((replacement, replacement_style))
        start = i + 1
    if start < len(value):
        out.append((value[start:], style))
    return out
