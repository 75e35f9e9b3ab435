"""Reading YAML that a user wrote: bounded, strict about duplicate keys, one-line errors.

PyYAML's ``safe_load`` constructs no objects but still accepts a key given twice (the last
one silently wins) and expands aliases without bound (a "billion laughs" document of a few
hundred bytes becomes gigabytes once walked).  :func:`load_yaml_file` and
:func:`load_yaml_text` refuse both, refuse a file above ``NOLB_MAX_YAML_BYTES`` or with
binary content, and turn every parse error into a :class:`NolbError` naming the file and
line.  They return the data and the composed node tree (for key line numbers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from nolb.errors import NolbError
from nolb.limits import limit


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value",
                                                        key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {seen[key]})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int], bound: int) -> int:
    """Number of nodes once every alias is expanded (memoised on node identity, stops at ``bound``)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = bound + 1  # a node reached again while being counted: recursive alias
    total = 1
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    for child in children:
        total += _expanded_size(child, memo, bound)
        if total > bound:
            break
    memo[id(node)] = total
    return total


def load_yaml_text(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse ``text`` (named ``source`` in errors): ``(data, node)``; data None for an empty document.

    Raises:
        NolbError: invalid YAML, a duplicate key, or more than ``NOLB_MAX_YAML_NODES`` nodes
            after alias expansion (each naming ``source`` and the line).
    """
    if "\x00" in text:
        raise NolbError(f"{source}: not a text file (it holds NUL bytes)")
    try:
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, None
            bound = limit("NOLB_MAX_YAML_NODES")
            if _expanded_size(node, {}, bound) > bound:
                raise NolbError(f"{source}: YAML expands to more than {bound} nodes (aliases?); "
                                f"set NOLB_MAX_YAML_NODES to raise the limit")
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise NolbError(f"{source}{where}: invalid YAML ({' '.join(str(problem).split())})") from None
    except RecursionError:
        raise NolbError(f"{source}: YAML nested too deeply") from None
    return data, node


def load_yaml_file(path: str | os.PathLike) -> tuple[Any, yaml.Node | None]:
    """Read and parse a YAML file with the limits of :func:`load_yaml_text`.

    Raises:
        NolbError: missing or unreadable file, larger than ``NOLB_MAX_YAML_BYTES``, not
            UTF-8 text, or any refusal of :func:`load_yaml_text`.
    """
    path = Path(path)
    bound = limit("NOLB_MAX_YAML_BYTES")
    try:
        if not path.is_file():
            raise NolbError(f"{path}: not a file")
        size = path.stat().st_size
        if size > bound:
            raise NolbError(f"{path}: {size} bytes, above the YAML limit of {bound} (set NOLB_MAX_YAML_BYTES to raise it)")
        raw = path.read_bytes()[: bound + 1]
    except OSError as exc:
        raise NolbError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NolbError(f"{path}: not a UTF-8 text file (byte {exc.start}); a config is YAML text") from None
    return load_yaml_text(text, str(path))


def parse_yaml_value(text: str) -> Any:
    """A ``key=value`` override's value parsed as YAML (bounded); plain text if it is not YAML."""
    try:
        return load_yaml_text(text, "override")[0]
    except NolbError as exc:
        if "invalid YAML" in str(exc) and "duplicate key" not in str(exc):
            return text
        raise
