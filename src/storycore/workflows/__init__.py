"""Storyboard panels to ComfyUI graphs: building, user templates, preflight."""
