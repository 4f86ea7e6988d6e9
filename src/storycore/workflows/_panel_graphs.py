"""Panel -> ComfyUI API graph: txt2img, img2img, LoRAs, VAE, ControlNets, IP-Adapter (pure).

The same panel and options always give the same nodes in the same order, hence the same ids,
JSON bytes and sha256. Node titles (``_meta.title``) are stable too, so people can read a graph in
the ComfyUI front end and templates can bind to them.

Shape of the built-in graph::

    CheckpointLoaderSimple -> [VAELoader] -> LoraLoader* -> CLIPTextEncode (positive, negative)
    [IP-Adapter loaders -> (LoadImage -> IPAdapterAdvanced)* per reference]
    [(LoadImage -> preprocessor? -> ControlNetApplyAdvanced)* per control, stacked]
    EmptyLatentImage | LoadImage -> ImageScale -> VAEEncode
    KSampler -> VAEDecode -> SaveImage
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storycore.errors import TemplateError, WorkflowError
from storycore.panels import ControlImage, ControlKind, Panel
from storycore.workflows._graph import (
    BuiltGraph,
    GraphBuilder,
    NodeRef,
    UploadRole,
    UploadSpec,
    graph_sha256,
    make_filename_prefix,
    upload_placeholder,
)
from storycore.workflows._options import GraphOptions

if TYPE_CHECKING:
    from storycore.workflows._templates import WorkflowTemplate

__all__ = [
    "AUX_PREPROCESSORS",
    "CORE_CLASSES_ASSUMED",
    "build_panel_graph",
    "panel_filename_prefix",
    "preprocessor_class",
]

# Which node turns a photo into each kind of control image. Canny uses ComfyUI's own node.
AUX_PREPROCESSORS: Mapping[str, str] = {
    "pose": "OpenposePreprocessor",
    "lineart": "LineArtPreprocessor",
}
CORE_CLASSES_ASSUMED = frozenset({"Canny"})
LOAD_IMAGE_INPUT = "image"


def preprocessor_class(kind: ControlKind, options: GraphOptions) -> str:
    """The node class that preprocesses a control image of ``kind``."""
    if kind == "canny":
        return "Canny"
    if kind == "depth":
        return options.depth_preprocessor
    return AUX_PREPROCESSORS[kind]


def panel_filename_prefix(panel: Panel, options: GraphOptions) -> str:
    return make_filename_prefix(
        options.filename_root, panel.project_id, panel.shot_id, panel.version
    )


@dataclass
class _State:
    """What the build steps pass along: the current model, clip, conditioning and vae outputs."""

    model: list[Any]
    clip: list[Any]
    vae: list[Any]
    positive: list[Any] | None = None
    negative: list[Any] | None = None


class _PanelGraph:
    def __init__(self, panel: Panel, options: GraphOptions, node_classes: Collection[str]) -> None:
        self.panel = panel
        self.options = options
        self.node_classes = node_classes
        self.g = GraphBuilder()
        self.uploads: list[UploadSpec] = []
        self.warnings: list[str] = []

    def load_image(self, role: UploadRole, index: int, panel_path: Path, title: str) -> NodeRef:
        placeholder = upload_placeholder(role, index, panel_path)
        node = self.g.add("LoadImage", {LOAD_IMAGE_INPUT: placeholder}, title)
        self.uploads.append(
            UploadSpec(panel_path, role, node.node_id, LOAD_IMAGE_INPUT, placeholder)
        )
        return node

    def build(self) -> BuiltGraph:
        p, g = self.panel, self.g
        ckpt = g.add("CheckpointLoaderSimple", {"ckpt_name": p.checkpoint}, "Load checkpoint")
        st = _State(model=ckpt.out(0), clip=ckpt.out(1), vae=ckpt.out(2))
        if p.vae:
            st.vae = g.add("VAELoader", {"vae_name": p.vae}, "Load VAE").out(0)
        for index, lora in enumerate(p.loras, start=1):
            node = g.add(
                "LoraLoader",
                {
                    "model": st.model,
                    "clip": st.clip,
                    "lora_name": lora.name,
                    "strength_model": float(lora.strength_model),
                    "strength_clip": float(lora.strength_clip),
                },
                f"LoRA {index}",
            )
            st.model, st.clip = node.out(0), node.out(1)
        pos = g.add("CLIPTextEncode", {"text": p.positive, "clip": st.clip}, "Positive prompt")
        neg = g.add("CLIPTextEncode", {"text": p.negative, "clip": st.clip}, "Negative prompt")
        st.positive, st.negative = pos.out(0), neg.out(0)
        if p.references:
            self.add_ipadapter(st)
        cn_loaders: dict[str, NodeRef] = {}
        for index, control in enumerate(p.controls):
            self.add_controlnet(st, index, control, cn_loaders)
        latent, denoise = self.add_latent(st)
        sampler = g.add(
            "KSampler",
            {
                "model": st.model,
                "seed": int(p.seed),
                "steps": int(p.steps),
                "cfg": float(p.cfg),
                "sampler_name": p.sampler,
                "scheduler": p.scheduler,
                "positive": st.positive,
                "negative": st.negative,
                "latent_image": latent,
                "denoise": float(denoise),
            },
            "Sampler",
        )
        decode = g.add("VAEDecode", {"samples": sampler.out(0), "vae": st.vae}, "Decode")
        prefix = panel_filename_prefix(p, self.options)
        save = g.add(
            "SaveImage", {"images": decode.out(0), "filename_prefix": prefix}, "Save image"
        )
        graph = g.build()
        return BuiltGraph(
            shot_id=p.shot_id,
            graph=graph,
            uploads=tuple(self.uploads),
            filename_prefix=prefix,
            output_node_ids=(save.node_id,),
            sha256=graph_sha256(graph),
            template=None,
            warnings=tuple(self.warnings),
        )

    def add_ipadapter(self, st: _State) -> None:
        o, g = self.options, self.g
        clip_vision: list[Any] | None = None
        if o.ipadapter_mode == "unified":
            loader = g.add(
                "IPAdapterUnifiedLoader",
                {"model": st.model, "preset": o.ipadapter_preset},
                "IP-Adapter loader",
            )
            st.model = loader.out(0)
            ipadapter = loader.out(1)
        else:
            ipadapter = g.add(
                "IPAdapterModelLoader", {"ipadapter_file": o.ipadapter_model}, "IP-Adapter model"
            ).out(0)
            clip_vision = g.add(
                "CLIPVisionLoader", {"clip_name": o.clip_vision_model}, "CLIP Vision"
            ).out(0)
        for index, ref_path in enumerate(self.panel.references):
            image = self.load_image("reference", index, ref_path, f"Reference {index + 1}")
            inputs: dict[str, Any] = {
                "model": st.model,
                "ipadapter": ipadapter,
                "image": image.out(0),
                "weight": float(o.ipadapter_weight),
                "weight_type": o.ipadapter_weight_type,
                "combine_embeds": o.ipadapter_combine_embeds,
                "start_at": float(o.ipadapter_start),
                "end_at": float(o.ipadapter_end),
                "embeds_scaling": o.ipadapter_embeds_scaling,
            }
            if clip_vision is not None:
                inputs["clip_vision"] = clip_vision
            if o.ipadapter_noise > 0:
                noise = g.add(
                    "IPAdapterNoise",
                    {
                        "type": "fade",
                        "strength": float(o.ipadapter_noise),
                        "blur": 0,
                        "image_optional": image.out(0),
                    },
                    f"Reference {index + 1} noise",
                )
                inputs["image_negative"] = noise.out(0)
            node = g.add("IPAdapterAdvanced", inputs, f"IP-Adapter {index + 1}")
            st.model = node.out(0)

    def add_controlnet(
        self, st: _State, index: int, control: ControlImage, loaders: dict[str, NodeRef]
    ) -> None:
        o, g, kind = self.options, self.g, control.kind
        label = f"Control {index + 1} ({kind})"
        image = self.load_image("control", index, control.path, label).out(0)
        if control.preprocess and o.preprocess:
            image = self.preprocess(kind, image, label)
        model_name = o.controlnet_model(kind)
        loader = loaders.get(model_name)
        if loader is None:
            loader = g.add(
                "ControlNetLoader", {"control_net_name": model_name}, f"ControlNet {kind}"
            )
            loaders[model_name] = loader
        strength = o.controlnet_strength if control.strength is None else control.strength
        start = o.controlnet_start if control.start_percent is None else control.start_percent
        end = o.controlnet_end if control.end_percent is None else control.end_percent
        if not (0.0 <= start <= end <= 1.0) or not 0.0 <= strength <= 10.0:
            raise WorkflowError(
                f"control {index + 1} ({kind}) has strength {strength}, start {start}, end {end}",
                where=f"shot {self.panel.shot_id}, controls[{index}]",
                hint="use a strength in 0..10 and 0 <= start <= end <= 1",
            )
        apply = g.add(
            "ControlNetApplyAdvanced",
            {
                "positive": st.positive,
                "negative": st.negative,
                "control_net": loader.out(0),
                "image": image,
                "strength": float(strength),
                "start_percent": float(start),
                "end_percent": float(end),
                "vae": st.vae,
            },
            f"Apply {label}",
        )
        st.positive, st.negative = apply.out(0), apply.out(1)

    def preprocess(self, kind: ControlKind, image: list[Any], label: str) -> list[Any]:
        cls = preprocessor_class(kind, self.options)
        if cls not in self.node_classes:
            self.warnings.append(
                f"{label}: preprocessing needs the {cls} node (comfyui_controlnet_aux), which the "
                "server does not offer; the control image is used as given"
            )
            return image
        p, o = self.panel, self.options
        if cls == "Canny":
            inputs: dict[str, Any] = {
                "image": image,
                "low_threshold": float(o.canny_low),
                "high_threshold": float(o.canny_high),
            }
        else:
            resolution = max(64, round(min(p.width, p.height) / 64) * 64)
            inputs = {"image": image, "resolution": resolution}
            if cls == "OpenposePreprocessor":
                inputs.update(detect_hand="enable", detect_body="enable", detect_face="enable")
            elif cls == "LineArtPreprocessor":
                inputs["coarse"] = "disable"
        return self.g.add(cls, inputs, f"Preprocess {label}").out(0)

    def add_latent(self, st: _State) -> tuple[list[Any], float]:
        p, g = self.panel, self.g
        if p.init_image is None:
            latent = g.add(
                "EmptyLatentImage",
                {"width": int(p.width), "height": int(p.height), "batch_size": 1},
                "Empty latent",
            )
            return latent.out(0), p.denoise
        image = self.load_image("init", 0, p.init_image, "Init image")
        scaled = g.add(
            "ImageScale",
            {
                "image": image.out(0),
                "upscale_method": "lanczos",
                "width": int(p.width),
                "height": int(p.height),
                "crop": "center",
            },
            "Fit init image",
        )
        encoded = g.add("VAEEncode", {"pixels": scaled.out(0), "vae": st.vae}, "Encode init image")
        denoise = p.denoise if p.denoise < 1.0 else self.options.img2img_denoise
        return encoded.out(0), denoise


def build_panel_graph(
    panel: Panel,
    options: GraphOptions | None = None,
    *,
    templates: Mapping[str, WorkflowTemplate] | None = None,
    node_classes: Collection[str] | None = None,
) -> BuiltGraph:
    """Build the API-format graph for one panel (pure and deterministic).

    ``node_classes`` is the set of classes the server offers (the keys of its ``/object_info``);
    it only decides whether optional preprocessors can be used. ``None`` assumes core ComfyUI.
    A panel with ``template`` set is rendered through that user template from ``templates``.
    """
    opts = options or GraphOptions()
    if panel.template:
        from storycore.workflows._templates import apply_template

        template = (templates or {}).get(panel.template)
        if template is None:
            known = ", ".join(sorted(templates or {})) or "none"
            raise TemplateError(
                f"shot uses the template {panel.template!r}, which is not declared",
                where=f"shot {panel.shot_id}",
                hint=f"declare it in the project or the config (declared: {known})",
            )
        return apply_template(template, panel, opts)
    classes = CORE_CLASSES_ASSUMED if node_classes is None else frozenset(node_classes)
    return _PanelGraph(panel, opts, classes).build()
