"""OpenAPI operations as MCP tools: pure conversion (schema, convert, request) and the REST caller."""
