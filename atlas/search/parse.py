r"""The ``where`` string form: a tokenizer and a recursive-descent parser, no ``eval``.

Grammar (keywords are case-insensitive)::

    expr      := and_expr ("or" and_expr)*
    and_expr  := not_expr ("and" not_expr)*
    not_expr  := "not" not_expr | "(" expr ")" | predicate
    predicate := column ("==" | "=" | "!=" | "<" | "<=" | ">" | ">=") literal
               | column ("==" | "!=") "[" [literal ("," literal)*] "]"   (a list attribute)
               | column "between" literal "and" literal
               | column ["not"] "in" list
               | column "startswith" string
               | column "is" ["not"] "null"
               | array "overlaps" list-of-two
    list      := "[" [literal ("," literal)*] "]"      (or parentheses)
    literal   := number | string | "true" | "false"
    column    := name of letters, digits, "_", "." (not starting with a digit)
               | `any text` (backquotes; a backquote inside is doubled)
    string    := '...' or "..." (backslash escapes \\ \' \" \n \t \uXXXX)

A string compared with a timestamp column is read as an ISO 8601 time.  Inputs
longer than :data:`MAX_LENGTH` characters or nested deeper than :data:`MAX_DEPTH`
are refused.  Every error is a :class:`~atlas.errors.QuerySyntaxError` giving the
0-based position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from atlas.errors import QuerySyntaxError
from atlas.search.predicates import Expression, Logic, Not, Predicate

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "parse_where"]

#: Longest expression accepted, in characters.
MAX_LENGTH = 100_000
#: Deepest nesting of parentheses and ``not`` accepted.
MAX_DEPTH = 64
#: Most digits of a number literal.
_MAX_DIGITS = 400

_KEYWORDS = frozenset(
    ("and", "or", "not", "in", "between", "startswith", "is", "null", "overlaps", "true", "false")
)
_OPS = ("==", "!=", "<=", ">=", "=", "<", ">")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0"}


@dataclass
class _Token:
    kind: str  # name, keyword, number, string, op, punct, end
    value: Any
    pos: int
    text: str

    @property
    def shown(self) -> str:
        return "the end of the expression" if self.kind == "end" else repr(self.text[:40])


def _error(message: str, pos: int) -> QuerySyntaxError:
    return QuerySyntaxError(f"{message} at position {pos}", pos)


def tokenize(text: str) -> list[_Token]:
    """The tokens of ``text`` (ending with an ``end`` token)."""
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "'\"":
            value, end = _string(text, i)
            out.append(_Token("string", value, i, text[i:end]))
            i = end
        elif c == "`":
            value, end = _quoted_name(text, i)
            out.append(_Token("name", value, i, text[i:end]))
            i = end
        elif c in "([,])":
            out.append(_Token("punct", c, i, c))
            i += 1
        elif (m := _NUMBER.match(text, i)) and (c.isdigit() or c in "+-."):
            raw = m.group()
            if len(raw) > _MAX_DIGITS:
                raise _error(f"number of {len(raw)} characters is too long", i)
            if m.end() < n and (text[m.end()].isalnum() or text[m.end()] == "_"):
                raise _error(f"unexpected {text[m.end()]!r} after the number {raw!r:.40}", m.end())
            is_int = re.fullmatch(r"[-+]?\d+", raw) is not None
            out.append(_Token("number", int(raw) if is_int else float(raw), i, raw))
            i = m.end()
        elif m := _NAME.match(text, i):
            word = m.group()
            kind = "keyword" if word.lower() in _KEYWORDS else "name"
            out.append(_Token(kind, word.lower() if kind == "keyword" else word, i, word))
            i = m.end()
        else:
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is None:
                raise _error(f"unexpected character {c!r}", i)
            out.append(_Token("op", "==" if op == "=" else op, i, op))
            i += len(op)
    out.append(_Token("end", None, n, ""))
    return out


def _string(text: str, start: int) -> tuple[str, int]:
    quote, i, parts = text[start], start + 1, []
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(parts), i + 1
        if c == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt in _ESCAPES:
                parts.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
                parts.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            raise _error(f"unknown escape {text[i : i + 2]!r} in a string", i)
        parts.append(c)
        i += 1
    raise _error("unterminated string", start)


def _quoted_name(text: str, start: int) -> tuple[str, int]:
    i, parts = start + 1, []
    while i < len(text):
        if text[i] == "`":
            if text[i + 1 : i + 2] == "`":
                parts.append("`")
                i += 2
                continue
            if not parts:
                raise _error("empty `column` name", start)
            return "".join(parts), i + 1
        parts.append(text[i])
        i += 1
    raise _error("unterminated `column` name", start)


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_(self, kind: str, value: Any = None) -> bool:
        return self.tok.kind == kind and (value is None or self.tok.value == value)

    def expect(self, kind: str, value: Any, what: str) -> _Token:
        if not self.is_(kind, value):
            raise _error(f"expected {what}, found {self.tok.shown}", self.tok.pos)
        return self.next()

    def parse(self) -> Expression:
        expr = self.or_expr()
        if not self.is_("end"):
            raise _error(f"expected 'and', 'or' or the end, found {self.tok.shown}", self.tok.pos)
        return expr

    def or_expr(self) -> Expression:
        items = [self.and_expr()]
        while self.is_("keyword", "or"):
            self.next()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Logic("or", items)

    def and_expr(self) -> Expression:
        items = [self.not_expr()]
        while self.is_("keyword", "and"):
            self.next()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else Logic("and", items)

    def _deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(f"expression nested deeper than {MAX_DEPTH} levels", self.tok.pos)

    def not_expr(self) -> Expression:
        if self.is_("keyword", "not"):
            self.next()
            self._deeper()
            inner = self.not_expr()
            self.depth -= 1
            return Not(inner)
        if self.is_("punct", "("):
            self.next()
            self._deeper()
            inner = self.or_expr()
            self.depth -= 1
            self.expect("punct", ")", "')'")
            return inner
        return self.predicate()

    def predicate(self) -> Expression:
        tok = self.tok
        if tok.kind != "name":
            hint = " (quote a column named like a keyword in backquotes: `in`)" if tok.kind == "keyword" else ""
            raise _error(f"expected a column name, found {tok.shown}{hint}", tok.pos)
        column = self.next().value
        tok = self.tok
        if tok.kind == "op":
            self.next()
            if tok.value in ("==", "!=") and self.is_("punct", "["):
                return Predicate(column, tok.value, self.list_())  # a list attribute
            return Predicate(column, tok.value, self.literal())
        if tok.kind == "keyword":
            word = self.next().value
            if word == "between":
                low = self.literal()
                self.expect("keyword", "and", "'and' of 'between LOW and HIGH'")
                return Predicate(column, "between", (low, self.literal()))
            if word == "in":
                return Predicate(column, "in", self.list_())
            if word == "not":
                self.expect("keyword", "in", "'in' after 'not'")
                return Predicate(column, "not in", self.list_())
            if word == "startswith":
                tok = self.tok
                if tok.kind != "string":
                    raise _error(f"startswith takes a quoted string, found {tok.shown}", tok.pos)
                return Predicate(column, "startswith", self.next().value)
            if word == "is":
                negate = self.is_("keyword", "not")
                if negate:
                    self.next()
                self.expect("keyword", "null", "'null'")
                return Predicate(column, "is not null" if negate else "is null")
            if word == "overlaps":
                pos = self.tok.pos
                pair = self.list_()
                if len(pair) != 2:
                    raise _error(f"overlaps takes two values [low, high], got {len(pair)}", pos)
                return Predicate(column, "overlaps", tuple(pair))
        raise _error(
            f"expected an operator (==, !=, <, <=, >, >=, between, in, not in, startswith, is null, overlaps) "
            f"after {column!r:.60}, found {tok.shown}",
            tok.pos,
        )

    def list_(self) -> list[Any]:
        open_ = self.tok
        if not (self.is_("punct", "[") or self.is_("punct", "(")):
            raise _error(f"expected a list [a, b, ...], found {open_.shown}", open_.pos)
        self.next()
        close = "]" if open_.value == "[" else ")"
        items: list[Any] = []
        if self.is_("punct", close):
            self.next()
            return items
        while True:
            items.append(self.literal())
            if self.is_("punct", ","):
                self.next()
                continue
            self.expect("punct", close, f"',' or {close!r} of the list opened at position {open_.pos}")
            return items

    def literal(self) -> Any:
        tok = self.tok
        if tok.kind in ("number", "string"):
            return self.next().value
        if tok.kind == "keyword" and tok.value in ("true", "false"):
            self.next()
            return tok.value == "true"
        raise _error(f"expected a value (number, 'string', true or false), found {tok.shown}", tok.pos)


def parse_where(text: str) -> Expression:
    """The :class:`~atlas.search.predicates.Expression` of a ``where`` string.

    Raises
    ------
    QuerySyntaxError
        When ``text`` does not follow the grammar (module docstring), is empty,
        longer than :data:`MAX_LENGTH` or nested deeper than :data:`MAX_DEPTH`.
    """
    if not isinstance(text, str):
        raise QuerySyntaxError(f"a where expression must be a str, not {type(text).__name__}", 0)
    if len(text) > MAX_LENGTH:
        raise _error(f"expression of {len(text)} characters is longer than {MAX_LENGTH}", MAX_LENGTH)
    if not text.strip():
        raise _error("empty expression", 0)
    return _Parser(tokenize(text)).parse()
