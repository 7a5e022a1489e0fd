"""The MCP face: virtual MCP servers that federate upstream MCP servers, and the upstream client pool."""
