"""Node definitions loaded from the recorded ``/object_info`` of a real ComfyUI.

The recordings ship as package data (``data/``). Model-file combos (``ckpt_name``, ``lora_name``,
...) and the ``LoadImage`` file list are rebuilt from the emulator's model files (a models folder
or fixed names, see _folders.py) and its input folder, the way a real server rebuilds them on
every ``/object_info`` call and validation.
"""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from ._folders import ModelFiles, StaticModels

__all__ = [
    "DEFAULT_MODELS",
    "MODEL_INPUTS",
    "NODE_PACK_MODULES",
    "NodeDefs",
    "load_data_json",
]

# Which pack name selects which python_module prefix in object_info_custom_nodes.json.
NODE_PACK_MODULES: dict[str, str] = {
    "ipadapter_plus": "custom_nodes.ComfyUI_IPAdapter_plus",
    "controlnet_aux": "custom_nodes.comfyui_controlnet_aux",
}

# (class_type, input name) -> model folder whose file list fills the combo.
MODEL_INPUTS: dict[tuple[str, str], str] = {
    **{
        (c, "ckpt_name"): "checkpoints"
        for c in (
            "CheckpointLoaderSimple",
            "CheckpointLoader",
            "unCLIPCheckpointLoader",
            "ImageOnlyCheckpointLoader",
            "CreateHookModelAsLora",
            "CreateHookModelAsLoraModelOnly",
        )
    },
    **{
        (c, "lora_name"): "loras"
        for c in ("LoraLoader", "LoraLoaderModelOnly", "CreateHookLora", "CreateHookLoraModelOnly")
    },
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("VAELoader", "vae_name"): "vae",
    ("IPAdapterModelLoader", "ipadapter_file"): "ipadapter",
}

# Inputs whose choices are the files of the input folder.
INPUT_FILE_INPUTS: frozenset[tuple[str, str]] = frozenset(
    {("LoadImage", "image"), ("LoadImageMask", "image")}
)

DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("v1-5-pruned-emaonly.safetensors", "tiny-random-sd15.safetensors"),
    "loras": ("storycore-style.safetensors",),
    "vae": ("vae-ft-mse-840000-ema-pruned.safetensors",),
    "controlnet": (
        "control_v11p_sd15_canny.pth",
        "control_v11p_sd15_openpose.pth",
        "control_v11f1p_sd15_depth.pth",
        "tiny-random-controlnet-sd15.safetensors",
    ),
    "clip_vision": ("CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors",),
    "ipadapter": ("ip-adapter_sd15.safetensors", "ip-adapter-plus_sd15.safetensors"),
    "upscale_models": ("RealESRGAN_x4plus.pth",),
    "text_encoders": (),
    "diffusion_models": (),
}


def load_data_json(name: str) -> Any:
    """Read one recording shipped in ``data/`` (``.json`` or ``.json.gz``)."""
    base = resources.files(__package__ or "storycore.emulator").joinpath("data")
    gz = base.joinpath(name + ".gz")
    if gz.is_file():
        return json.loads(gzip.decompress(gz.read_bytes()).decode("utf-8"))
    return json.loads(base.joinpath(name).read_text(encoding="utf-8"))


def _combo_options(spec: Sequence[Any]) -> list[Any] | None:
    """The choices of a combo input spec, or None for a non-combo input."""
    if not spec:
        return None
    head = spec[0]
    if isinstance(head, list):
        return head
    if head == "COMBO":
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        options = opts.get("options", [])
        return list(options) if isinstance(options, list) else []
    return None


def _with_options(spec: list[Any], options: list[str]) -> list[Any]:
    new = copy.deepcopy(spec)
    if isinstance(new[0], list):
        new[0] = list(options)
    else:
        new[1]["options"] = list(options)
    return new


class NodeDefs:
    """The node classes a server accepts, with model lists filled in."""

    def __init__(
        self,
        models: Mapping[str, Sequence[str]] | ModelFiles,
        node_packs: Sequence[str],
        list_input_files: Callable[[], list[str]],
    ) -> None:
        core: dict[str, Any] = load_data_json("object_info.json")
        defs = dict(core)
        if node_packs:
            custom: dict[str, Any] = load_data_json("object_info_custom_nodes.json")
            wanted = []
            for pack in node_packs:
                if pack not in NODE_PACK_MODULES:
                    raise ValueError(
                        f"unknown node pack {pack!r}; known: {', '.join(NODE_PACK_MODULES)}"
                    )
                wanted.append(NODE_PACK_MODULES[pack])
            for name, info in custom.items():
                if any(str(info.get("python_module", "")).startswith(w) for w in wanted):
                    defs[name] = info
        self._defs = defs
        self._files: ModelFiles = StaticModels(models) if isinstance(models, Mapping) else models
        self._list_input_files = list_input_files
        self._registered: list[str] = list(load_data_json("models.json")["body"])
        self._ipadapter = "ipadapter_plus" in node_packs
        if self._ipadapter and "ipadapter" not in self._registered:
            self._registered.append("ipadapter")

    @property
    def model_folders(self) -> list[str]:
        """``GET /models``: the recorded folder names, then any other folder the emulator has."""
        names = list(self._registered)
        for folder in self._files.folders():
            if folder == "ipadapter" and not self._ipadapter:
                continue  # the folder is registered by the IPAdapter pack
            if folder not in names:
                names.append(folder)
        return names

    def __contains__(self, class_type: object) -> bool:
        return isinstance(class_type, str) and class_type in self._defs

    def class_names(self) -> list[str]:
        return list(self._defs)

    def raw(self, class_type: str) -> dict[str, Any]:
        return self._defs[class_type]  # type: ignore[no-any-return]

    def is_output(self, class_type: str) -> bool:
        return bool(self._defs[class_type].get("output_node", False))

    def return_types(self, class_type: str) -> list[Any]:
        return list(self._defs[class_type].get("output", []))

    def folder_files(self, folder: str) -> list[str]:
        return self._files.files(folder)

    def live_spec(self, class_type: str, category: str, name: str) -> list[Any]:
        """One input spec with its combo choices as the server shows them now."""
        spec: list[Any] = self._defs[class_type]["input"][category][name]
        key = (class_type, name)
        if key in MODEL_INPUTS:
            files = self.folder_files(MODEL_INPUTS[key])
            if class_type == "VAELoader":
                files = [*files, "pixel_space"]
            return _with_options(spec, files)
        if key in INPUT_FILE_INPUTS:
            return _with_options(spec, self._list_input_files())
        return spec

    def info(self, class_type: str) -> dict[str, Any]:
        """The ``/object_info`` entry of one class, with live combos."""
        entry = self._defs[class_type]
        touched = [
            (cat, name)
            for cat in ("required", "optional")
            for name in entry["input"].get(cat, {})
            if (class_type, name) in MODEL_INPUTS or (class_type, name) in INPUT_FILE_INPUTS
        ]
        if not touched:
            return entry  # type: ignore[no-any-return]
        out = copy.copy(entry)
        out["input"] = {k: dict(v) for k, v in entry["input"].items()}
        for cat, name in touched:
            out["input"][cat][name] = self.live_spec(class_type, cat, name)
        return out  # type: ignore[no-any-return]

    def all_info(self) -> dict[str, Any]:
        return {name: self.info(name) for name in self._defs}

    def inputs(self, class_type: str) -> list[tuple[str, str, list[Any]]]:
        """(category, name, live spec) for required then optional inputs, in declared order."""
        entry = self._defs[class_type]["input"]
        out: list[tuple[str, str, list[Any]]] = []
        for cat in ("required", "optional"):
            for name in entry.get(cat, {}):
                out.append((cat, name, self.live_spec(class_type, cat, name)))
        return out

    def combo_options(self, spec: Sequence[Any]) -> list[Any] | None:
        return _combo_options(spec)
