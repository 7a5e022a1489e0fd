"""Protocol faces built on the official SDKs: `mcp/` today, `a2a/` and the translators as they land.

May import the SDKs, starlette, `identity` (types only) and the leaf module `gateway.errors`; nothing else
from `gateway`.
"""
