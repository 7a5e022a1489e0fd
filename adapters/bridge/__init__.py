"""Protocol bridges: A2A agents' skills served as MCP tools (`a2a_tools.py`). Imports the SDKs and
`adapters`; of the gateway only its errors (the gateway passes in what it owns)."""
