"""Resource URIs are routed to their owner: exact URIs first, then RFC 6570 templates, in order."""

from __future__ import annotations

import pytest

from adapters.mcp.routing import ResourceRoutes, template_regex


@pytest.mark.parametrize(
    ("template", "uri", "matches"),
    [
        ("directory://people/{id}", "directory://people/E100", True),
        ("directory://people/{id}", "directory://people/E100/extra", False),
        ("directory://people/{id}", "directory://people/", False),
        ("file:///{+path}", "file:///etc/hosts", True),
        ("search://q{?term,limit}", "search://q?term=a&limit=2", True),
        ("search://q{?term,limit}", "search://q", True),
        ("a.b://{x}", "aXb://1", False),
    ],
)
def test_template_regex(template: str, uri: str, matches: bool) -> None:
    assert bool(template_regex(template).match(uri)) is matches


def test_owner_prefers_exact_then_first_template() -> None:
    routes = ResourceRoutes.build(
        [("wiki", ["docs://home"]), ("crm", ["docs://home", "crm://accounts"])],
        [("crm", ["docs://{page}"]), ("wiki", ["docs://{page}"])],
    )
    assert routes.owner("docs://home") == "wiki"
    assert routes.owner("crm://accounts") == "crm"
    assert routes.owner("docs://other") == "crm"
    assert routes.owner("nowhere://x") is None
    assert routes.template_owner("docs://{page}") == "crm"
