"""Which upstream serves a resource URI. Pure; built from the upstreams' resource and template lists.

Resource URIs are not rewritten (tools embed them in results, and clients resolve them later), so a
read is routed by ownership: an exact URI listed by an upstream first, then the first upstream whose
URI template matches, both in the virtual server's upstream order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

_EXPRESSION: Final = re.compile(r"\{([+#./;?&]?)([^}]*)\}")


def template_regex(template: str) -> re.Pattern[str]:
    """A regex for an RFC 6570 template: `{x}` is one path segment, `{+x}` anything, `{?x,y}` a query."""
    out: list[str] = []
    pos = 0
    for m in _EXPRESSION.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        op = m.group(1)
        if op in ("+", "#"):
            out.append(".*")
        elif op in ("?", "&"):
            out.append(r"(?:[?&][^#]*)?")
        else:
            out.append("[^/?#]+")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class ResourceRoutes:
    """Ownership of resources across the upstreams of one virtual server."""

    exact: Mapping[str, str]
    templates: tuple[tuple[str, re.Pattern[str], str], ...]
    """(template, compiled regex, upstream), in upstream order."""

    @classmethod
    def build(
        cls, resources: Iterable[tuple[str, Iterable[str]]], templates: Iterable[tuple[str, Iterable[str]]]
    ) -> ResourceRoutes:
        """`resources` and `templates` are (upstream, uris) pairs in the virtual server's upstream order."""
        exact: dict[str, str] = {}
        for upstream, uris in resources:
            for uri in uris:
                exact.setdefault(uri, upstream)
        compiled = tuple((t, template_regex(t), upstream) for upstream, ts in templates for t in ts)
        return cls(exact=exact, templates=compiled)

    def owner(self, uri: str) -> str | None:
        if uri in self.exact:
            return self.exact[uri]
        for _template, regex, upstream in self.templates:
            if regex.match(uri):
                return upstream
        return None

    def template_owner(self, template: str) -> str | None:
        for t, _regex, upstream in self.templates:
            if t == template:
                return upstream
        return None
