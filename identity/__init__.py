"""Agent identities, tokens and the least-privilege policy model (pure); never imports gateway or adapters.

Empty until the identity work lands: every virtual server is public for now.
"""
