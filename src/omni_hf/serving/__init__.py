"""Serving omni_hf models over the network (the OpenAI-compatible HTTP server and the Realtime WebSocket)."""
