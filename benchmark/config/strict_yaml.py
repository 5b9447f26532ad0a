"""A YAML loader for configs that refuses what safe_load lets through silently or dangerously.

yaml.SafeLoader already refuses Python tags (`!!python/object`); on top of it this loader
refuses a key twice in one mapping (safe_load keeps the last, so the file says two things),
more than MAX_ALIASES alias references, and documents whose aliases would expand to more than
MAX_EXPANDED_NODES nodes (a "billion laughs" bomb is a few bytes that every later deep copy,
dump or hash expands into gigabytes), and nesting deep enough to overflow the parser.
"""

from __future__ import annotations

from typing import Any

import yaml

from episodes.errors import PartbenchError

MAX_ALIASES = 100  # a hand-written config uses a handful
MAX_EXPANDED_NODES = 100_000  # the largest shipped config has under 100 nodes
MAX_INT_DIGITS = 40  # as episodes.storage's JSON reader: no config count needs more
_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictYAMLError(PartbenchError, ValueError):
    """YAML that partbench refuses; the message says why and where (line numbers are 1-based)."""


class StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader + no duplicate keys + bounded aliases and expansion."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise StrictYAMLError(
                    f"line {mark.line + 1}: more than {MAX_ALIASES} aliases "
                    "(*name); write the values out"
                )
        return super().compose_node(parent, index)

    def compose_document(self) -> Any:
        node = super().compose_document()
        size = _expanded_size(node, {})
        if size > MAX_EXPANDED_NODES:
            raise StrictYAMLError(
                f"its aliases expand to {size} values (more than "
                f"{MAX_EXPANDED_NODES}): an alias bomb, not a config"
            )
        return node

    def construct_yaml_int(self, node: Any) -> int:
        digits = sum(c.isalnum() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise StrictYAMLError(
                f"line {node.start_mark.line + 1}: an integer of {digits:,} "
                f"digits (at most {MAX_INT_DIGITS}); no config value needs one"
            )
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue  # `<<: *defaults` then explicit keys is an override, not a duplicate
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable key: SafeConstructor reports it
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise StrictYAMLError(
                        f"line {line}: key {key!r} appears twice in one mapping "
                        f"(first on line {first}); keep one"
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


# yaml registers constructors by tag, as functions: register the bounded one for this loader
StrictSafeLoader.add_constructor("tag:yaml.org,2002:int", StrictSafeLoader.construct_yaml_int)


def _expanded_size(node: Any, memo: dict[int, int | None]) -> int:
    """How many nodes the document has once every alias is expanded (memoised: linear time)."""
    key = id(node)
    if key in memo:
        if memo[key] is None:
            raise StrictYAMLError("an anchor contains an alias to itself (a recursive structure)")
        return memo[key]  # type: ignore[return-value]
    memo[key] = None
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[key] = size
    return size


def load_yaml(text: str) -> Any:
    """Parse one YAML document strictly.

    Raises:
        StrictYAMLError: a duplicate key, too many aliases, an alias bomb, a recursive anchor,
            absurd nesting, or yaml's own error (unsafe tag, syntax), as one line.
    """
    try:
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except StrictYAMLError:
        raise
    except yaml.YAMLError as exc:
        raise StrictYAMLError(" ".join(str(exc).split())) from None
    except RecursionError:
        raise StrictYAMLError("nested too deeply to be a config") from None
    except ValueError as exc:  # a value the constructors refuse (a huge float, say): one line
        raise StrictYAMLError(" ".join(str(exc).split())[:200]) from None
