"""Which panel image a LoadImage node receives, by its title and the nodes it feeds (pure).

Node classes: ComfyUI ``nodes.py`` @ 5aabaf51 (ControlNetApply, ControlNetApplyAdvanced,
ControlNetLoader, CLIPVisionEncode, StyleModelApply) and the recorded custom node packs
(ComfyUI_IPAdapter_plus, comfyui_controlnet_aux: OpenposePreprocessor, DepthAnythingPreprocessor,
LineArtPreprocessor, ...).
"""

from __future__ import annotations

from storycore._text import node_sort_key
from storycore.workflows._infer_graph import GraphView

__all__ = ["CONTROL_WORDS", "image_role"]

CONTROL_WORDS: dict[str, tuple[str, ...]] = {
    "pose": ("pose", "openpose", "dwpose"),
    "depth": ("depth", "midas", "zoe"),
    "lineart": ("lineart", "line art", "line_art", "sketch", "scribble"),
    "canny": ("canny", "edge"),
}
_REFERENCE_WORDS = ("reference", "character", "face", "style", "ipadapter", "ip-adapter")
_REFERENCE_CLASS_WORDS = ("ipadapter", "clipvisionencode", "stylemodel", "reference", "instantid")


def image_role(view: GraphView, node_id: str) -> tuple[str | None, str]:
    """The binding a LoadImage node serves (``references``, ``controls.<kind>``) and why, or
    ``None`` and why not. A title wins over the graph."""
    words = view.words(node_id)
    if any(w in words for w in _REFERENCE_WORDS):
        return "references", "its title names a reference"
    for kind, hints in CONTROL_WORDS.items():
        if any(h in words for h in hints):
            return f"controls.{kind}", f"its title names a {kind} control"
    below = view.downstream(node_id)
    classes = {view.class_of(n).lower() for n in below}
    applies = [n for n in below if view.has_input(n, "control_net")]
    if applies:
        for kind, hints in CONTROL_WORDS.items():
            if any(h.replace(" ", "") in c for h in hints for c in classes):
                return f"controls.{kind}", f"it feeds a {kind} preprocessor and a ControlNet"
        for apply in applies:
            loader = view.source(apply, "control_net")
            model = str(view.inputs(loader[0]).get("control_net_name", "")) if loader else ""
            for kind, hints in CONTROL_WORDS.items():
                if any(h.replace(" ", "") in model.lower() for h in hints):
                    return f"controls.{kind}", f"it feeds the ControlNet {model!r}"
        return None, (
            "it feeds a ControlNet, but neither its title nor the ControlNet model says which "
            "kind (pose, depth, lineart, canny); put the kind in its title"
        )
    for node in sorted(below, key=node_sort_key):
        if any(w in view.class_of(node).lower() for w in _REFERENCE_CLASS_WORDS):
            return "references", f"it feeds {view.label(node)}"
    return None, (
        "not recognised as a reference, control or init image; put 'reference', 'pose', "
        "'depth', 'lineart' or 'canny' in its title, or bind it by hand"
    )
