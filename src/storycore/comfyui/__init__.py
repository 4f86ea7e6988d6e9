"""Talking to ComfyUI: the client, event parsing, prompt tracking, the local server manager."""
