"""Talking to the Kubernetes API: plain-dict requests, watches, the API client."""
