"""Atomic writes honour the umask; strict JSON refuses duplicate keys and absurd nesting."""

from __future__ import annotations

import os
import stat

import pytest

from episodes.storage import (
    MAX_JSON_DEPTH,
    StrictJSONError,
    atomic_write_text,
    json_depth,
    loads_strict,
)


def test_atomic_writes_get_the_permissions_of_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "result.json", "{}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_text(tmp_path / "private", "x").stat().st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a": {"b": 1, "b": 2}}', "key 'b' appears twice"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nest deeper than 64 levels"),
        ('{"a": 1', "not valid JSON"),
        (b"\xc3\x28", "not UTF-8 text"),
    ],
)
def test_strict_json_refuses_ambiguous_or_absurd_text(text, message):
    with pytest.raises(StrictJSONError, match=message):
        loads_strict(text)


def test_strict_json_reads_what_partbench_writes():
    wide = "[" + ",".join(["[1]"] * 500) + "]"  # many brackets, shallow: accepted
    assert len(loads_strict(wide)) == 500
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json_depth(deep) == MAX_JSON_DEPTH
    loads_strict(deep)  # exactly at the bound: accepted
    assert loads_strict('{"s": "[[[[{{{{ in a string ]]"}') == {"s": "[[[[{{{{ in a string ]]"}
    assert json_depth('{"a": "[[[", "b": [[1]]}') == 3
