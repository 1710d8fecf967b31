"""Conductor's parameter expressions (reference §4): ``${path}`` inside any string, recursively.

* A string that is exactly one ``${...}`` yields the raw value (object, list, number, null).
* Otherwise every ``${...}`` is interpolated into the string.
* ``$${`` escapes to a literal ``${``; ``${}`` becomes ``""``; nested ``${...}`` inside a path resolve first.
* Paths are JSONPath over a document ``{"workflow": {...}, "<taskRef>": {...}}``: dotted keys, ``[n]``
  indexes (negative from the end), ``['quoted key']``, ``[*]`` and deep scan ``..key``. A missing path
  yields null, as Conductor's ``SUPPRESS_EXCEPTIONS`` does.
* ``${CPEWF_TASK_ID}`` is the id of the task being scheduled.

* Filters ``[?(@.a.b == 'x')]`` keep the list elements a predicate holds for: comparisons ``== != < <= > >=``
  against numbers, quoted strings, ``true``/``false``/``null``, bare existence ``[?(@.a)]``, joined with
  ``&&`` and ``||``.
* Environment values: ``${workflow.env.NAME}``, or ``${NAME}`` alone, resolve only for names on the node's
  allow-list (``PARTITA_EXPRESSION_ENV``); Conductor reads any JVM property or OS variable, which leaks.

Pure: no I/O, no clock (the allow-listed environment comes in with the document).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any

_MISSING = object()


def resolve(template: object, doc: Mapping[str, object], *, task_id: str | None = None) -> object:
    """Resolve every expression inside ``template`` (dicts and lists recursively) against ``doc``."""
    if isinstance(template, str):
        return _resolve_string(template, doc, task_id)
    if isinstance(template, dict):
        return {key: resolve(value, doc, task_id=task_id) for key, value in template.items()}
    if isinstance(template, list):
        return [resolve(value, doc, task_id=task_id) for value in template]
    return template


def _find_close(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start``, or -1 (quoted strings inside a
    filter may hold braces)."""
    depth = 1
    i = start
    quote = ""
    while i < len(text):
        if quote:
            if text[i] == quote:
                quote = ""
            i += 1
            continue
        if text[i] in "'\"" and "[?(" in text[start:i]:
            quote = text[i]
            i += 1
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _resolve_string(text: str, doc: Mapping[str, object], task_id: str | None) -> object:
    if "${" not in text:
        return text
    pieces: list[object] = []
    i = 0
    literal: list[str] = []
    while i < len(text):
        if text.startswith("$${", i):
            literal.append("${")
            i += 3
            continue
        if text.startswith("${", i):
            close = _find_close(text, i + 2)
            if close < 0:  # unterminated: Conductor leaves it as text
                literal.append(text[i:])
                break
            if literal:
                pieces.append("".join(literal))
                literal = []
            inner = text[i + 2 : close]
            inner_resolved = _resolve_string(inner, doc, task_id) if "${" in inner else inner
            pieces.append(_Value(_evaluate(str(inner_resolved), doc, task_id)))
            i = close + 1
            continue
        literal.append(text[i])
        i += 1
    if literal:
        pieces.append("".join(literal))
    if len(pieces) == 1 and isinstance(pieces[0], _Value):
        return pieces[0].value
    return "".join(piece.render() if isinstance(piece, _Value) else str(piece) for piece in pieces)


class _Value:
    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def render(self) -> str:
        value = self.value
        if isinstance(value, str):
            return value
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        # Conductor renders Java's Map.toString ("{a=1}"); JSON is what anyone downstream can parse.
        return json.dumps(value, separators=(",", ":"), default=str)


ENVIRONMENT_KEY = "\x00env"  # where the document carries the allow-listed environment


def _evaluate(path: str, doc: Mapping[str, object], task_id: str | None) -> object:
    path = path.strip()
    if not path:
        return ""
    if path == "CPEWF_TASK_ID":
        return task_id
    value = evaluate_path(path, doc)
    if value is _MISSING:
        environment = doc.get(ENVIRONMENT_KEY)
        if isinstance(environment, Mapping) and path in environment:
            return environment[path]
        return None
    return value


def evaluate_path(path: str, doc: object) -> object:
    """Evaluate a JSONPath against ``doc``; returns the module's missing marker when nothing matches."""
    if path.startswith("$"):
        path = path[1:]
    tokens = _tokenize(path)
    if tokens is None:
        return _MISSING
    current: list[object] = [doc]
    multi = False
    for kind, key in tokens:
        found: list[object] = []
        for node in current:
            if kind == "key":
                if isinstance(node, Mapping) and key in node:
                    found.append(node[key])
            elif kind == "index":
                if isinstance(node, list):
                    index = int(key)
                    if -len(node) <= index < len(node):
                        found.append(node[index])
            elif kind == "filter":
                multi = True
                if isinstance(node, list):
                    found.extend(item for item in node if _holds(key, item))
            elif kind == "wild":
                multi = True
                if isinstance(node, Mapping):
                    found.extend(node.values())
                elif isinstance(node, list):
                    found.extend(node)
            else:  # deep scan
                multi = True
                _deep_scan(node, key, found)
        current = found
    if multi:
        return current
    return current[0] if current else _MISSING


def _deep_scan(node: object, key: str, found: list[object]) -> None:
    if isinstance(node, Mapping):
        if key == "*":
            found.extend(node.values())
        elif key in node:
            found.append(node[key])
        for value in node.values():
            _deep_scan(value, key, found)
    elif isinstance(node, list):
        for value in node:
            _deep_scan(value, key, found)


def _tokenize(path: str) -> list[tuple[str, str]] | None:
    tokens: list[tuple[str, str]] = []
    i = 0
    n = len(path)
    while i < n:
        char = path[i]
        if path.startswith("..", i):
            i += 2
            start = i
            while i < n and path[i] not in ".[":
                i += 1
            if start == i:
                return None
            tokens.append(("deep", path[start:i]))
        elif char == ".":
            i += 1
        elif char == "[":
            close = _closing_bracket(path, i)
            if close < 0:
                return None
            body = path[i + 1 : close].strip()
            i = close + 1
            if body.startswith("?(") and body.endswith(")"):
                tokens.append(("filter", body[2:-1]))
            elif body == "*":
                tokens.append(("wild", "*"))
            elif len(body) >= 2 and body[0] == body[-1] and body[0] in "'\"":
                tokens.append(("key", body[1:-1]))
            elif body.lstrip("-").isdigit():
                tokens.append(("index", body))
            else:
                return None  # filters and slices: not supported yet
        else:
            start = i
            while i < n and path[i] not in ".[":
                i += 1
            name = path[start:i]
            tokens.append(("wild", "*") if name == "*" else ("key", name))
    return tokens


def _outside_quotes(text: str, start: int = 0) -> Iterator[int]:
    """Indexes of the characters of ``text`` from ``start`` that are not inside a quoted string."""
    quote = ""
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        else:
            yield index


def _closing_bracket(path: str, start: int) -> int:
    """Index of the ``]`` closing the ``[`` at ``start``, skipping quoted strings (filters hold them)."""
    return next((i for i in _outside_quotes(path, start + 1) if path[i] == "]"), -1)


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, start = [], 0
    for index in _outside_quotes(text):
        if index >= start and text.startswith(separator, index):
            parts.append(text[start:index])
            start = index + len(separator)
    parts.append(text[start:])
    return parts


def _holds(predicate: str, item: object) -> bool:
    """Evaluate a filter predicate (``||`` of ``&&`` of comparisons) against one list element."""
    return any(
        all(_compare(term.strip(), item) for term in _split_outside_quotes(alternative, "&&"))
        for alternative in _split_outside_quotes(predicate, "||")
    )


def _compare(term: str, item: object) -> bool:
    for symbol in _OPERATORS:
        left, found, right = term.partition(symbol)
        if found:
            break
    else:
        left, symbol, right = term, "", ""
    left = left.strip()
    if not left.startswith("@"):
        return False
    value = evaluate_path(left[1:], item) if left != "@" else item
    if not symbol:
        return value is not _MISSING and value is not None and value is not False
    if value is _MISSING:
        return False
    literal = _literal(right.strip())
    if isinstance(value, bool) != isinstance(literal, bool) and symbol in ("==", "!="):
        return symbol == "!="  # true is not 1 in JSONPath
    try:
        return bool(_OPERATORS[symbol](value, literal))
    except TypeError:  # comparing a number with a string: false, as in Jayway
        return False


def _literal(text: str) -> object:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text
