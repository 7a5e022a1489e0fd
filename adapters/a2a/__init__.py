"""The A2A protocol adapter: proxying tasks to downstream agents."""
