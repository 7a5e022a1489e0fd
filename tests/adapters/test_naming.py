"""Namespacing is deterministic and reversible; tool filters are globs over `upstream/tool`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.mcp.naming import Origin, ToolSelection, expose, split

UPSTREAM = st.from_regex(r"[a-z0-9](?:[a-z0-9-]|_(?!_))*", fullmatch=True).filter(
    lambda n: not n.endswith("_")
)
TOOL = st.text(st.sampled_from("abcXYZ019_-."), min_size=1, max_size=20)


@given(UPSTREAM, TOOL)
def test_prefix_round_trips(upstream: str, tool: str) -> None:
    """Any valid upstream name (no `__`) and any tool name, even one containing `__`, round-trips."""
    origin = Origin(upstream, tool)
    assert split(expose(origin, "prefix")) == origin


def test_examples() -> None:
    assert expose(Origin("crm", "search"), "prefix") == "crm__search"
    assert expose(Origin("crm", "search"), "none") == "search"
    assert split("crm__a__b") == Origin("crm", "a__b")
    assert split("search") is None
    assert split("__x") is None
    assert split("crm__") is None


def test_selection() -> None:
    selection = ToolSelection(include=["crm/*", "wiki/search"], exclude=["crm/delete_*"])
    assert selection.selects(Origin("crm", "lookup"))
    assert not selection.selects(Origin("crm", "delete_account"))
    assert selection.selects(Origin("wiki", "search"))
    assert not selection.selects(Origin("wiki", "edit"))
    assert ToolSelection().selects(Origin("any", "thing"))
