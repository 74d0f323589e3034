"""Parser for MLflow's filter and order-by strings.

    filter     := comparison ("AND" comparison)*
    comparison := identifier op value | identifier ("IS" ["NOT"] "NULL")
    identifier := [entity "."] key        either may be `back-quoted`, a key "double-quoted"
    op         := = | != | <> | < | <= | > | >= | LIKE | ILIKE | [NOT] IN
    value      := 'string' | "string" | number | "(" value ("," value)* ")"

Entity prefixes follow MLflow: metrics, params, tags, attributes and datasets, with their
singular and short aliases. An identifier without a prefix is an attribute (`name` in experiment
searches). Errors name the position and say how to fix the filter. A filter holds at most
MAX_CONDITIONS conditions, a LIKE pattern at most MAX_PATTERN_LENGTH characters and an order at
most MAX_ORDER_KEYS keys.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from modelyard.errors import InvalidArgument
from modelyard.services.common.validation import MAX_KEY_LENGTH, shown

Entity = Literal["metric", "param", "tag", "attribute", "dataset"]
Value = str | float | tuple[str | float, ...] | None

_ENTITY_ALIASES: dict[str, Entity] = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<ident>(?:[A-Za-z_][\w]*|`[^`]*`)(?:\.(?:[\w]+|`[^`]*`|"[^"]*"))*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "LIKE", "ILIKE", "IN", "NOT", "IS", "NULL"}
# Bounds that keep a query within what SQLite accepts (expression depth, tables in a join) and
# its cost predictable; no key is longer than validation.key allows (MAX_KEY_LENGTH).
MAX_CONDITIONS = 100
MAX_ORDER_KEYS = 20
# SQLite refuses LIKE patterns over 50,000 bytes (an INTERNAL error); at 4 bytes a character at
# most, this stays under it, and is longer than any value a pattern could match (tag values:
# 8,000 characters, each at most 2 in a pattern, escaped).
MAX_PATTERN_LENGTH = 12_000


@dataclass(frozen=True, slots=True)
class Comparison:
    entity: Entity
    key: str
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class OrderKey:
    entity: Entity
    key: str
    ascending: bool = True


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _bad(message: str, field: str) -> InvalidArgument:
    return InvalidArgument(message, field=field)


def _tokenize(text: str, field: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise _bad(
                f"{field}: unexpected character {text[pos]!r} at position {pos}; "
                "quote string values with single quotes",
                field,
            )
        kind = match.lastgroup or ""
        if kind != "ws":
            value = match.group()
            if kind == "ident" and value.upper() in _KEYWORDS:
                kind = "kw"
                value = value.upper()
            tokens.append(_Tok(kind, value, pos))
        pos = match.end()
    return tokens


def _unquote(text: str) -> str:
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


def _split_identifier(raw: str, field: str) -> tuple[Entity, str]:
    head, dot, rest = raw.partition(".")
    entity = _ENTITY_ALIASES.get(_clean_key(head).lower()) if dot else None
    if entity is None:
        return "attribute", _checked_key(_clean_key(raw), field)
    if not rest:
        raise _bad(f"{field}: {shown(raw)} names no key after {head!r}", field)
    return entity, _checked_key(_clean_key(rest), field)


def _checked_key(key: str, field: str) -> str:
    if len(key) > MAX_KEY_LENGTH:
        raise _bad(
            f"{field}: key {shown(key)} is {len(key)} characters long; keys have at most "
            f"{MAX_KEY_LENGTH}, so check the identifier",
            field,
        )
    return key


def _clean_key(key: str) -> str:
    if len(key) >= 2 and key[0] == key[-1] and key[0] in '`"':
        return key[1:-1]
    return key


class _Parser:
    def __init__(self, text: str, field: str) -> None:
        self.field = field
        self.tokens = _tokenize(text, field)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, what: str) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise _bad(f"{self.field}: ended early, expected {what}", self.field)
        self.i += 1
        return tok

    def fail(self, tok: _Tok, expected: str) -> InvalidArgument:
        return _bad(
            f"{self.field}: expected {expected} at position {tok.pos}, found {shown(tok.text)}",
            self.field,
        )

    def comparison(self) -> Comparison:
        tok = self.take("an identifier such as metrics.rmse")
        entity: Entity
        if tok.kind == "string" and tok.text[0] == '"':  # a quoted attribute: "Run Name"
            entity, key = "attribute", _checked_key(_unquote(tok.text), self.field)
        elif tok.kind == "ident":
            entity, key = _split_identifier(tok.text, self.field)
        else:
            raise self.fail(tok, "an identifier such as metrics.rmse or tags.team")
        op_tok = self.take("a comparison operator")
        if op_tok.kind == "op":
            op = "!=" if op_tok.text == "<>" else op_tok.text
            return Comparison(entity, key, op, self.scalar())
        if op_tok.kind == "kw" and op_tok.text in ("LIKE", "ILIKE"):
            value = self.scalar()
            if not isinstance(value, str):
                raise _bad(f"{self.field}: {op_tok.text} needs a quoted string pattern", self.field)
            self.check_pattern(value, op_tok.text)
            return Comparison(entity, key, op_tok.text, value)
        if op_tok.kind == "kw" and op_tok.text == "NOT":
            nxt = self.take("IN")
            if nxt.text != "IN":
                raise self.fail(nxt, "IN after NOT")
            return Comparison(entity, key, "NOT IN", self.value_list())
        if op_tok.kind == "kw" and op_tok.text == "IN":
            return Comparison(entity, key, "IN", self.value_list())
        if op_tok.kind == "kw" and op_tok.text == "IS":
            nxt = self.take("NULL or NOT NULL")
            negate = nxt.text == "NOT"
            if negate:
                nxt = self.take("NULL")
            if nxt.text != "NULL":
                raise self.fail(nxt, "NULL")
            return Comparison(entity, key, "IS NOT NULL" if negate else "IS NULL", None)
        raise self.fail(op_tok, "one of = != < <= > >= LIKE ILIKE IN NOT IN IS")

    def check_pattern(self, pattern: str, op: str) -> None:
        """A backslash escapes the character after it (sql.LIKE_ESCAPE), so a pattern may not end
        with one escaping nothing: PostgreSQL fails such a search, SQLite matches nothing."""
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise _bad(
                f"{self.field}: {op} pattern {shown(pattern)} is longer than "
                f"{MAX_PATTERN_LENGTH} characters; search for a shorter part of the value",
                self.field,
            )
        trailing = len(pattern) - len(pattern.rstrip("\\"))
        if trailing % 2:
            raise _bad(
                f"{self.field}: {op} pattern {shown(pattern)} ends with an escaping backslash; "
                "write \\\\ for a literal backslash",
                self.field,
            )

    def scalar(self) -> str | float:
        tok = self.take("a value")
        if tok.kind == "string":
            return _unquote(tok.text)
        if tok.kind == "number":
            number = float(tok.text)
            if not math.isfinite(number):
                raise _bad(
                    f"{self.field}: number {shown(tok.text)} at position {tok.pos} is out of "
                    "range; compare with a number between -1.8e308 and 1.8e308",
                    self.field,
                )
            return number
        raise self.fail(tok, "a quoted string or a number")

    def value_list(self) -> tuple[str | float, ...]:
        tok = self.take("(")
        if tok.text != "(":
            raise self.fail(tok, "a parenthesized list such as ('a', 'b')")
        values = [self.scalar()]
        while True:
            tok = self.take(", or )")
            if tok.text == ")":
                return tuple(values)
            if tok.text != ",":
                raise self.fail(tok, ", or )")
            values.append(self.scalar())


def like_literal(text: str) -> str:
    """`text` for inside a quoted LIKE pattern, matching only itself: user text searched for
    as a substring or prefix must not turn its %, _ or backslash into wildcards or escapes."""
    escaped = re.sub(r"([\\%_])", r"\\\1", text)
    return escaped.replace("'", "''")


def parse_filter(text: str | None, field: str = "filter") -> tuple[Comparison, ...]:
    """Parse a filter; an empty or blank string means no filter."""
    if not text or not text.strip():
        return ()
    if "\x00" in text:  # PostgreSQL cannot compare text with NUL in it
        raise _bad(f"{field} contains a NUL character (\\x00); remove it", field)
    parser = _Parser(text, field)
    clauses = [parser.comparison()]
    while (tok := parser.peek()) is not None:
        parser.i += 1
        if tok.text == "OR":
            raise _bad(f"{field}: OR is not supported; combine conditions with AND", field)
        if tok.text != "AND":
            raise parser.fail(tok, "AND between conditions")
        clauses.append(parser.comparison())
        if len(clauses) > MAX_CONDITIONS:
            raise _bad(
                f"{field} has more than {MAX_CONDITIONS} conditions; narrow it down, or split "
                "the search into several",
                field,
            )
    return tuple(clauses)


def _split_direction(raw: str) -> tuple[str, bool]:
    """'<identifier> [ASC|DESC]' -> (identifier, ascending), in linear time: a regex with a lazy
    identifier backtracks quadratically over a long run of spaces."""
    words = raw.strip().rsplit(None, 1)
    if len(words) == 2 and words[1].upper() in ("ASC", "DESC"):
        return words[0], words[1].upper() == "ASC"
    return raw.strip(), True


def parse_order_by(items: list[str] | tuple[str, ...], field: str = "order_by") -> list[OrderKey]:
    if len(items) > MAX_ORDER_KEYS:
        raise _bad(
            f"{field} has {len(items)} entries; order by at most {MAX_ORDER_KEYS} keys", field
        )
    keys = []
    for raw in items:
        ident, ascending = _split_direction(raw or "")
        if not ident:
            raise _bad(f"{field}: {shown(raw)} is not '<identifier> [ASC|DESC]'", field)
        tokens = _tokenize(ident, field)
        if len(tokens) != 1 or tokens[0].kind != "ident":
            raise _bad(
                f"{field}: {shown(raw)} is not '<identifier> [ASC|DESC]', e.g. 'metrics.rmse DESC'",
                field,
            )
        entity, key = _split_identifier(tokens[0].text, field)
        keys.append(OrderKey(entity, key, ascending))
    return keys
