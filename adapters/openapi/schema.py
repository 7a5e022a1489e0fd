"""OpenAPI 3.0/3.1 Schema Objects as self-contained JSON Schema 2020-12, the dialect of MCP tool
schemas. Pure: no I/O; imports nothing of the gateway.

Local `$ref`s (`#/components/...`) are inlined; a schema that refers back to itself (directly or
through others) is kept once under the tool schema's `$defs` and referred to there, so a recursive
type stays finite. OpenAPI 3.0's dialect is rewritten (`nullable` → a `null` type, boolean
`exclusiveMinimum`/`exclusiveMaximum` → numbers); OpenAPI-only keywords and `x-` extensions are
dropped; `readOnly` properties leave request schemas and `writeOnly` ones leave response schemas
(OpenAPI 3.1 §4.8.24: they are relevant only in the other direction).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Literal

Direction = Literal["request", "response"]

DROPPED: Final = frozenset({"discriminator", "xml", "externalDocs", "example", "nullable", "$schema", "$id"})
"""OpenAPI-only or document-level keywords that mean nothing (or something wrong) in a tool schema."""

SUBSCHEMA: Final = frozenset(
    {
        "items",
        "additionalProperties",
        "not",
        "contains",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
        "if",
        "then",
        "else",
        "additionalItems",
    }
)
SUBSCHEMA_LISTS: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
SUBSCHEMA_MAPS: Final = frozenset({"properties", "patternProperties", "dependentSchemas"})

MAX_WORK: Final = 5_000_000
"""Schema nodes converted per document at most, so a hostile document (a YAML alias bomb, say)
cannot make start-up take forever."""


class OpenApiError(ValueError):
    """The document (or a part of it) cannot be turned into tools; the message is safe to show."""


class SchemaConverter:
    """Converts the Schema Objects of one document; results are memoised per (`$ref`, direction),
    so a component used by many operations is converted once. Never mutate what it returns."""

    def __init__(self, document: Mapping[str, Any], *, openapi_30: bool) -> None:
        self._doc = document
        self._openapi_30 = openapi_30
        self._memo: dict[tuple[str, Direction], tuple[Any, frozenset[str]]] = {}
        self._recursive: dict[str, bool] = {}
        self._edges: dict[str, frozenset[str]] = {}
        self._work = 0

    def schema(self, node: Any, direction: Direction) -> dict[str, Any]:
        """A self-contained JSON Schema for `node`, with `$defs` for its recursive parts."""
        out, needed = self.part(node, direction)
        if not needed:
            return out
        defs = self.definitions(needed, direction)
        root = out.get("$ref")
        if len(out) == 1 and isinstance(root, str) and isinstance(defs.get(root[len("#/$defs/") :]), dict):
            out = defs[root[len("#/$defs/") :]]  # a recursive type at the root: its own schema, once
        return {**out, "$defs": defs}

    def part(self, node: Any, direction: Direction) -> tuple[dict[str, Any], frozenset[str]]:
        """A schema for `node` to embed in a larger one, and the recursive references whose
        `definitions` that larger schema must carry under `$defs`."""
        converted, needed = self._convert(node, direction)
        out = converted if isinstance(converted, dict) else ({} if converted is True else {"not": {}})
        return out, needed

    def definitions(self, needed: frozenset[str], direction: Direction) -> dict[str, Any]:
        """`$defs` for the recursive references in `needed` and everything they need in turn."""
        defs: dict[str, Any] = {}
        pending = sorted(needed)
        while pending:
            ref = pending.pop()
            name = def_name(ref)
            if name in defs:
                continue
            converted, more = self._convert(self.resolve(ref), direction, inline=ref)
            defs[name] = converted
            pending += [r for r in more if def_name(r) not in defs]
        return defs

    def resolve(self, ref: str) -> Any:
        """The node a local reference points at (RFC 6901 JSON pointer); OpenApiError otherwise."""
        if not ref.startswith("#/"):
            raise OpenApiError(f"only local references are supported (got {ref[:80]!r})")
        node: Any = self._doc
        for raw in ref[2:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise OpenApiError(f"unresolvable reference {ref[:80]!r}")
        return node

    def deref(self, node: Any, limit: int = 32) -> Any:
        """Follow `$ref` chains of a non-schema object (a Parameter, a Request Body, a Response)."""
        seen: set[str] = set()
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen or len(seen) >= limit:
                raise OpenApiError(f"reference cycle at {ref[:80]!r}")
            seen.add(ref)
            node = self.resolve(ref)
        return node

    # -- conversion -------------------------------------------------------------------------------

    def _convert(
        self, node: Any, direction: Direction, inline: str | None = None
    ) -> tuple[Any, frozenset[str]]:
        """(JSON Schema, recursive refs it points at through `#/$defs/...`)."""
        self._work += 1
        if self._work > MAX_WORK:
            raise OpenApiError(f"the document's schemas are too large (more than {MAX_WORK} nodes)")
        if isinstance(node, bool):
            return node, frozenset()
        if not isinstance(node, Mapping):
            return {}, frozenset()
        ref = node.get("$ref")
        if isinstance(ref, str) and ref != inline:
            return self._with_siblings(node, ref, direction)
        out: dict[str, Any] = {}
        needed: set[str] = set()
        for key, value in node.items():
            if key in DROPPED or key.startswith("x-") or (key == "$ref" and ref == inline):
                continue
            out[key], more = self._keyword(key, value, direction)
            needed |= more
        if key_list := self._hidden(node, direction):
            out["required"] = [r for r in out.get("required", []) if r not in key_list]
            if not out["required"]:
                del out["required"]
        self._openapi_30_bounds(out)
        if node.get("nullable") is True:
            out = nullable(out)
        return out, frozenset(needed)

    def _keyword(self, key: str, value: Any, direction: Direction) -> tuple[Any, frozenset[str]]:
        if key in SUBSCHEMA:
            return self._convert(value, direction)
        if key in SUBSCHEMA_LISTS and isinstance(value, list):
            parts = [self._convert(v, direction) for v in value]
            return [p[0] for p in parts], frozenset().union(*(p[1] for p in parts))
        if key in SUBSCHEMA_MAPS and isinstance(value, Mapping):
            return self._properties(key, value, direction)
        return value, frozenset()

    def _properties(
        self, key: str, value: Mapping[str, Any], direction: Direction
    ) -> tuple[dict[str, Any], frozenset[str]]:
        out: dict[str, Any] = {}
        needed: set[str] = set()
        for name, sub in value.items():
            if key == "properties" and self._hidden_in(sub, direction):
                continue
            out[name], more = self._convert(sub, direction)
            needed |= more
        return out, frozenset(needed)

    def _hidden_in(self, node: Any, direction: Direction) -> bool:
        """A property that does not belong in this direction (readOnly in a request, writeOnly in a
        response)."""
        try:
            target = self.deref(node) if isinstance(node, Mapping) else node
        except OpenApiError:
            return False
        flag = "readOnly" if direction == "request" else "writeOnly"
        return isinstance(target, Mapping) and target.get(flag) is True

    def _hidden(self, node: Mapping[str, Any], direction: Direction) -> set[str]:
        props = node.get("properties")
        if not isinstance(props, Mapping):
            return set()
        return {name for name, sub in props.items() if self._hidden_in(sub, direction)}

    def _with_siblings(
        self, node: Mapping[str, Any], ref: str, direction: Direction
    ) -> tuple[Any, frozenset[str]]:
        target, needed = self._ref(ref, direction)
        rest = {k: v for k, v in node.items() if k != "$ref"}
        if not rest:
            return target, needed
        siblings, more = self._convert(rest, direction)
        if not siblings:
            return target, needed
        if isinstance(target, dict) and set(siblings) <= {"description", "title", "deprecated", "default"}:
            return {**target, **siblings}, needed
        if rest.get("nullable") is True and set(siblings) <= {"anyOf", "description", "title"}:
            return {**siblings, "anyOf": [target, {"type": "null"}]}, needed
        return {"allOf": [target], **siblings}, needed | more

    def _ref(self, ref: str, direction: Direction) -> tuple[Any, frozenset[str]]:
        key = (ref, direction)
        found = self._memo.get(key)
        if found is not None:
            return found
        if not ref.startswith("#/"):
            result: tuple[Any, frozenset[str]] = ({"description": "(an external reference)"}, frozenset())
        elif self.recursive(ref):
            result = ({"$ref": f"#/$defs/{def_name(ref)}"}, frozenset({ref}))
        else:
            result = self._convert(self.resolve(ref), direction, inline=ref)
        self._memo[key] = result
        return result

    # -- recursion --------------------------------------------------------------------------------

    def recursive(self, ref: str) -> bool:
        """Whether the schema at `ref` can reach itself through references (Tarjan's SCCs, run from
        each new root; the answers of earlier runs stay valid)."""
        if ref not in self._recursive:
            self._strongly_connect(ref)
        return self._recursive[ref]

    def _refs_in(self, ref: str) -> frozenset[str]:
        found = self._edges.get(ref)
        if found is None:
            out: set[str] = set()
            stack: list[Any] = [self.resolve(ref)]
            while stack:
                self._work += 1
                if self._work > MAX_WORK:
                    raise OpenApiError(f"the document's schemas are too large (more than {MAX_WORK} nodes)")
                node = stack.pop()
                if isinstance(node, Mapping):
                    target = node.get("$ref")
                    if isinstance(target, str) and target.startswith("#/"):
                        out.add(target)
                    stack.extend(v for k, v in node.items() if k != "$ref")
                elif isinstance(node, list):
                    stack.extend(node)
            found = self._edges[ref] = frozenset(out)
        return found

    def _strongly_connect(self, root: str) -> None:
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        work: list[tuple[str, list[str]]] = []

        def visit(ref: str) -> None:
            index[ref] = low[ref] = len(index)
            stack.append(ref)
            on_stack.add(ref)
            work.append((ref, sorted(self._refs_in(ref))))

        visit(root)
        while work:
            ref, successors = work[-1]
            if successors:
                nxt = successors.pop()
                if nxt in self._recursive:
                    continue  # finished in an earlier run: not part of a cycle through this one
                if nxt not in index:
                    visit(nxt)
                elif nxt in on_stack:
                    low[ref] = min(low[ref], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[ref])
            if low[ref] == index[ref]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == ref:
                        break
                cyclic = len(component) > 1 or ref in self._refs_in(ref)
                for member in component:
                    self._recursive[member] = cyclic

    def _openapi_30_bounds(self, out: dict[str, Any]) -> None:
        """OpenAPI 3.0 (JSON Schema draft 4): `exclusiveMinimum: true` qualifies `minimum`."""
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            value = out.get(flag)
            if isinstance(value, bool):
                if value and bound in out:
                    out[flag] = out.pop(bound)
                else:
                    del out[flag]


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0 `nullable: true` in JSON Schema 2020-12: `null` joins the type (and the enum)."""
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list):
        if "null" not in kind:
            out["type"] = [*kind, "null"]
    else:
        return {"anyOf": [out, {"type": "null"}]}
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def def_name(ref: str) -> str:
    """The `$defs` key of a recursive reference: `#/components/schemas/Node` → `Node`."""
    tail = ref.removeprefix("#/components/schemas/").removeprefix("#/")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tail.replace("~1", "/").replace("~0", "~").replace("/", "."))


def is_object_schema(schema: Mapping[str, Any]) -> bool:
    """A schema whose instances are JSON objects (MCP output schemas must be, through 2025-11-25)."""
    kind = schema.get("type")
    return kind == "object" or (kind is None and "properties" in schema and "anyOf" not in schema)
