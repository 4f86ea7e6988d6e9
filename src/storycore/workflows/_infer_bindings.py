"""Infer a template's bindings from its workflow: which node inputs receive each panel value.

Pure: an API-format graph and the server's node catalog in, an :class:`InferredBindings` out
(what was bound, to which node input, and why; what was not, and why). The rules, by node class,
title and position in the graph:

* the **sampler** is the KSampler / KSamplerAdvanced / SamplerCustom / SamplerCustomAdvanced that
  starts from its own latent (a second one that refines its output keeps its values; two that
  do not feed each other cannot be told apart: the workflow is refused). It gives ``seed``
  (``seed`` or ``noise_seed``, or RandomNoise), ``steps``, ``cfg``, ``sampler``, ``scheduler``
  and ``denoise`` (on the sampler, or on its KSamplerSelect / BasicScheduler / CFGGuider);
* ``prompt`` / ``negative``: the text encoders feeding the sampler's positive / negative input,
  followed through conditioning nodes (combine, set area, timestep range, ControlNet apply, whose
  ``positive`` output follows its ``positive`` input) and FluxGuidance; a title that says
  "negative" or "positive" wins over the position. A negative that is a ConditioningZeroOut (or a
  BasicGuider, which takes none) is "no negative prompt", not an error;
* Flux-style graphs (a FluxGuidance node, or CLIPTextEncodeFlux): ``cfg`` goes to the
  ``guidance`` input; the sampler's cfg (1.0) stays. With a zeroed negative and no guidance input
  (a guidance-distilled model), ``cfg`` is not bound at all;
* ``width`` / ``height``: the empty latent (EmptyLatentImage, EmptySD3LatentImage...) the sampler
  starts from; an img2img graph (VAEEncode) binds its LoadImage as ``init_image`` instead;
* LoadImage nodes: a title naming a reference ("reference", "character", "face", "style") or a
  kind of control ("pose", "depth", "lineart", "canny"), else the graph (IP-Adapter / CLIP vision
  -> ``references``; ControlNet apply -> ``controls.<kind>``, the kind from the title, a
  preprocessor or the ControlNet model's file name);
* the checkpoint and LoRAs are reported, not bound, unless asked: ``render.checkpoint`` always has
  a value (an SD1.5 file by default) and would replace the model the workflow was made for;
  StoryCore has no LoRA binding;
* ``filename_prefix`` is never bound: StoryCore then gives every SaveImage node the per-shot
  prefix ``<root>/<project>/<shot>/v<version>`` (see :mod:`._templates`), which keeps outputs of
  different shots apart even when a workflow has several SaveImage nodes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from storycore.errors import TemplateError
from storycore.workflows._infer_conditioning import text_inputs, trace
from storycore.workflows._infer_graph import GraphView
from storycore.workflows._infer_images import image_role
from storycore.workflows._infer_result import Bound, InferredBindings, NotBound, NotBoundKind
from storycore.workflows._infer_samplers import Setup, is_sampler, sampler_setup
from storycore.workflows._nodedefs import NodeCatalog

__all__ = ["Bound", "InferredBindings", "NotBound", "infer_bindings"]

# Each sampler and each LoadImage costs a walk of the graph; real workflows have a handful.
_MAX_SAMPLERS = 64
_MAX_IMAGES = 64


def infer_bindings(
    graph: Mapping[str, Any],
    catalog: NodeCatalog | None,
    *,
    bind_checkpoint: bool = False,
    source: str = "<workflow>",
) -> InferredBindings:
    """Infer the bindings of an API-format ``graph``. Raises :class:`TemplateError` when the
    workflow cannot render a panel (no sampler, no output node, samplers that cannot be told
    apart)."""
    return _Inferer(GraphView(graph, catalog), bind_checkpoint, source).run()


class _Inferer:
    def __init__(self, view: GraphView, bind_checkpoint: bool, source: str) -> None:
        self.view = view
        self.bind_checkpoint = bind_checkpoint
        self.source = source
        self.bound: list[Bound] = []
        self.not_bound: list[NotBound] = []
        self.notes: list[str] = []
        counts = Counter(view.title(i) for i in view.ids())
        self.unique_titles = {t for t, n in counts.items() if t and n == 1} - set(view.graph)

    # --- recording ----------------------------------------------------------------------------

    def ref(self, node_id: str, name: str) -> str:
        title = self.view.title(node_id)
        return f"{title if title in self.unique_titles else node_id}.{name}"

    def bind(self, value: str, node_id: str, name: str, note: str = "") -> None:
        if any(b.value == value and b.node_id == node_id and b.input == name for b in self.bound):
            return
        view = self.view
        cls, title = view.class_of(node_id), view.title(node_id)
        self.bound.append(Bound(value, node_id, cls, title, name, self.ref(node_id, name), note))

    def skip(self, value: str, reason: str, kind: NotBoundKind = "absent") -> None:
        self.not_bound.append(NotBound(value, reason, kind))

    # --- the whole inference ------------------------------------------------------------------

    def run(self) -> InferredBindings:
        view = self.view
        samplers = [i for i in view.ids() if is_sampler(view, i)]
        outputs = [i for i in view.ids() if view.is_output_node(i)]
        if not samplers:
            raise TemplateError(
                "the workflow has no sampler node (KSampler, KSamplerAdvanced, SamplerCustom or "
                "SamplerCustomAdvanced), so StoryCore has nowhere to put a panel's seed, steps "
                "and prompts",
                where=self.source,
                hint="import a text-to-image or image-to-image workflow that samples an image",
            )
        if not outputs:
            raise TemplateError(
                "the workflow has no output node (SaveImage or PreviewImage), so a render would "
                "give back no image",
                where=self.source,
                hint="add a SaveImage node after the VAE Decode and save the workflow again",
            )
        if len(samplers) > _MAX_SAMPLERS:
            raise TemplateError(
                f"the workflow has {len(samplers)} samplers; StoryCore infers the bindings of "
                f"workflows with at most {_MAX_SAMPLERS}",
                where=self.source,
                hint="write the binding file by hand (examples/templates/README.md)",
            )
        main, others = self.main_sampler(samplers, outputs)
        setups = [sampler_setup(view, s) for s in [main, *others]]
        self.sampler_values(setups[0])
        self.prompts(setups)
        self.size(setups[0])
        self.models(setups[0])
        self.images()
        self.output_notes(main, outputs)
        return InferredBindings(
            bound=tuple(self.bound),
            not_bound=tuple(self.not_bound),
            sampler_id=main,
            output_ids=tuple(outputs),
            notes=tuple(self.notes),
            graph=view.graph,
        )

    def main_sampler(self, samplers: list[str], outputs: list[str]) -> tuple[str, list[str]]:
        view = self.view
        feeding = [s for s in samplers if view.downstream(s) & set(outputs)] or samplers
        roots = [s for s in feeding if not (view.upstream(s) & (set(feeding) - {s}))]
        reason = "it starts from its own latent"
        if not roots:  # every sampler depends on another: a loop, which ComfyUI refuses too
            raise TemplateError(
                "the samplers of the workflow feed one another in a loop ("
                + ", ".join(view.label(s) for s in feeding)
                + ")",
                where=self.source,
                hint="open the workflow in ComfyUI, remove the loop and save it again",
            )
        if len(roots) > 1:
            named = [s for s in roots if any(w in view.words(s) for w in ("base", "main"))]
            if len(named) != 1:
                labels = ", ".join(view.label(s) for s in roots)
                raise TemplateError(
                    f"the workflow has {len(roots)} samplers that do not feed one another "
                    f"({labels}), so StoryCore cannot tell which one renders the panel",
                    where=self.source,
                    hint="remove the others, or put 'main' in the title of the one to use, and "
                    "run 'storycore template add' again",
                )
            roots, reason = named, "its title says so"
        main = roots[0]
        others = [s for s in feeding if s != main]
        if others:
            self.notes.append(
                f"sampler: {view.label(main)} chosen of {len(feeding)} ({reason}); "
                + ", ".join(view.label(s) for s in others)
                + (" keeps its" if len(others) == 1 else " keep their")
                + " own seed, steps and cfg; the prompts reach them too"
            )
        return main, others

    # --- one sampler's inputs -----------------------------------------------------------------

    def value_target(self, value: str, node_id: str, name: str) -> tuple[str, str, str] | None:
        """Where to write ``value``: the input itself, or the primitive node feeding it."""
        view = self.view
        origin = view.source(node_id, name)
        if origin is None:
            return node_id, name, ""
        holder = view.single_value_input(origin[0])
        if holder is not None:
            return origin[0], holder, f"feeds {name} of {view.label(node_id)}"
        self.skip(
            value,
            f"{name} of {view.label(node_id)} comes from {view.label(origin[0])}, which StoryCore "
            "cannot fill",
            "unknown",
        )
        return None

    def sampler_values(self, setup: Setup) -> None:
        view = self.view
        guidance = trace(self.view, setup.positive).guidance
        for value in ("seed", "steps", "cfg", "sampler", "scheduler", "denoise"):
            place = setup.values.get(value)
            if value == "cfg" and guidance:
                for node_id, name in guidance:
                    self.bind("cfg", node_id, name, "Flux-style: the panel's cfg is the guidance")
                if place is not None:
                    current = view.inputs(place[0]).get(place[1])
                    self.skip(
                        "cfg",
                        f"the sampler's cfg ({current}) on {view.label(place[0])} stays: a "
                        "Flux-style graph takes its guidance instead (set render.cfg to about "
                        "3.5 for Flux dev)",
                        "kept",
                    )
                continue
            zeroed = trace(self.view, setup.negative)
            if value == "cfg" and place is not None and zeroed.zeroed and not zeroed.encoders:
                current = view.inputs(place[0]).get(place[1])
                self.skip(
                    "cfg",
                    f"the sampler's cfg ({current}) on {view.label(place[0])} stays: its negative "
                    f"is {view.label(zeroed.zeroed[0])} (Flux-style, guidance-distilled) and the "
                    "workflow has no guidance input to give the panel's cfg to",
                    "kept",
                )
                continue
            if place is None:
                self.skip(value, f"{view.label(setup.sampler)} takes no {value}", "absent")
                continue
            target = self.value_target(value, *place)
            if target is not None:
                self.bind(value, *target)

    # --- conditioning -------------------------------------------------------------------------

    def prompts(self, setups: list[Setup]) -> None:
        view = self.view
        positive = trace(self.view, [e for s in setups for e in s.positive])
        negative = trace(self.view, [e for s in setups for e in s.negative])
        pos = list(dict.fromkeys(positive.encoders))
        neg = list(dict.fromkeys(negative.encoders))
        for node_id in list(dict.fromkeys([*pos, *neg])):
            words = view.words(node_id)
            says_neg, says_pos = (
                "negative" in words,
                "positive" in words and "negative" not in words,
            )
            if says_neg and node_id in pos:
                pos.remove(node_id)
                neg += [] if node_id in neg else [node_id]
            elif says_pos and node_id in neg:
                neg.remove(node_id)
                pos += [] if node_id in pos else [node_id]
            elif node_id in pos and node_id in neg:
                neg.remove(node_id)
                self.notes.append(
                    f"prompt: {view.label(node_id)} feeds both the positive and the negative "
                    "input; bound as the prompt"
                )
        for value, encoders, found in (("prompt", pos, positive), ("negative", neg, negative)):
            for node_id in encoders:
                for name in text_inputs(self.view, node_id):
                    target = self.value_target(value, node_id, name)
                    if target is not None:
                        self.bind(value, *target)
            if encoders:
                continue
            first = setups[0]
            if value == "negative" and first.no_negative:
                self.skip(value, first.no_negative, "none")
            elif value == "negative" and found.zeroed:
                self.skip(
                    value,
                    f"no negative prompt: the sampler's negative is {view.label(found.zeroed[0])}"
                    " (Flux-style models take none)",
                    "none",
                )
            elif found.dead_ends:
                self.skip(
                    value,
                    f"the {value} conditioning comes from {view.label(found.dead_ends[0])}, "
                    "which is not a text encoder StoryCore knows",
                    "unknown",
                )
            else:
                self.skip(value, "no text encoder feeds the sampler's " + value, "absent")

    # --- size, init image, models -------------------------------------------------------------

    def size(self, setup: Setup) -> None:
        view = self.view
        if setup.latent is None:
            return
        for node_id in view.follow_typed(*setup.latent, "LATENT"):
            if view.has_input(node_id, "pixels"):
                for image in view.follow_typed(node_id, "pixels", "IMAGE"):
                    if view.has_input(image, "image") and view.source(image, "image") is None:
                        self.bind("init_image", image, "image", "img2img: encoded as the latent")
                        break
                for value in ("width", "height"):
                    self.skip(value, f"img2img: the size comes from {view.label(node_id)}", "none")
                return
            if view.has_input(node_id, "width") and view.has_input(node_id, "height"):
                for value in ("width", "height"):
                    target = self.value_target(value, node_id, value)
                    if target is not None:
                        self.bind(value, *target)
                return
        for value in ("width", "height"):
            self.skip(value, "the sampler's latent does not come from an empty latent", "absent")

    def models(self, setup: Setup) -> None:
        view = self.view
        loader = None
        for node_id in view.follow_typed(*setup.model, "MODEL") if setup.model else ():
            inputs = view.inputs(node_id)
            if view.has_input(node_id, "lora_name"):
                strength = inputs.get("strength_model", inputs.get("strength"))
                self.skip(
                    "lora",
                    f"{view.label(node_id)} loads {inputs.get('lora_name')!r} at strength "
                    f"{strength}; StoryCore has no LoRA binding, so the workflow's LoRAs load as "
                    "saved and a shot's own LoRAs are not applied",
                    "kept",
                )
            if view.class_of(node_id).startswith("ModelSampling") and all(
                view.has_input(node_id, v) for v in ("width", "height")
            ):  # ModelSamplingFlux: its shift follows the image size
                for value in ("width", "height"):
                    target = self.value_target(value, node_id, value)
                    if target is not None:
                        self.bind(value, *target[:2], "the model's shift follows the size")
            if view.has_input(node_id, "ckpt_name") or view.has_input(node_id, "unet_name"):
                loader = node_id
                break
        if loader is None:
            self.skip("checkpoint", "no checkpoint loader feeds the sampler's model", "absent")
            return
        inputs = view.inputs(loader)
        if view.has_input(loader, "unet_name"):
            self.skip(
                "checkpoint",
                f"{view.label(loader)} loads {inputs.get('unet_name')!r} from diffusion_models; "
                "render.checkpoint names a file in checkpoints, so the workflow's model stays",
                "kept",
            )
        elif self.bind_checkpoint:
            self.bind("checkpoint", loader, "ckpt_name", "--bind-checkpoint")
        else:
            self.skip(
                "checkpoint",
                f"the workflow's model {inputs.get('ckpt_name')!r} ({view.label(loader)}) stays; "
                "with --bind-checkpoint render.checkpoint chooses it",
                "kept",
            )

    # --- image inputs -------------------------------------------------------------------------

    def images(self) -> None:
        view = self.view
        taken = {b.node_id for b in self.bound if b.value == "init_image"}
        loaders = [i for i in view.ids() if view.class_of(i) == "LoadImage" and i not in taken]
        if len(loaders) > _MAX_IMAGES:
            self.skip(
                "images",
                f"{len(loaders)} LoadImage nodes, more than the {_MAX_IMAGES} StoryCore sorts "
                "out by itself; bind the ones you need by hand",
                "unknown",
            )
            return
        for node_id in loaders:
            role, why = image_role(view, node_id)
            if role is None:
                self.skip("images", f"{view.label(node_id)}: {why}", "unknown")
            else:
                self.bind(role, node_id, "image", why)

    def output_notes(self, main: str, outputs: list[str]) -> None:
        view = self.view
        after = [o for o in outputs if o in view.downstream(main)] or outputs
        saves = [o for o in after if view.class_of(o) == "SaveImage"]
        if not saves:
            self.notes.append(
                f"output: {view.label(after[0])} keeps its images only as temporary files and "
                "gets no per-shot prefix; replace it with a SaveImage node"
            )
        elif len(saves) > 1:
            self.notes.append(
                f"output: {len(saves)} SaveImage nodes ({', '.join(saves)}); each gets the "
                "per-shot filename prefix"
            )
        self.skip(
            "filename_prefix",
            "not bound on purpose: StoryCore gives every SaveImage node the per-shot prefix "
            "<root>/<project>/<shot>/v<version>",
            "kept",
        )
