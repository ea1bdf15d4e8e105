"""Talking to providers: the httpx client, and what their answers mean."""
