"""Which custom node pack provides which node class (data for the preflight's hints).

The two packs StoryCore uses were recorded from real installs (ComfyUI_IPAdapter_plus at
cubiq/ComfyUI_IPAdapter_plus 9d076a3d, comfyui_controlnet_aux at Fannovel16 e8b689a5); a test checks
this table against ``custom_nodes_index.json`` in the recordings. A few widely used packs are
recognised by their class-name prefixes.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["KNOWN_PACKS", "PACK_CLASSES", "pack_for_class"]

KNOWN_PACKS: Mapping[str, str] = {
    "ComfyUI_IPAdapter_plus": "https://github.com/cubiq/ComfyUI_IPAdapter_plus",
    "comfyui_controlnet_aux": "https://github.com/Fannovel16/comfyui_controlnet_aux",
}

PACK_CLASSES: Mapping[str, tuple[str, ...]] = {
    "ComfyUI_IPAdapter_plus": (
        "IPAdapter",
        "IPAdapterAdvanced",
        "IPAdapterBatch",
        "IPAdapterFaceID",
        "IPAdapterFaceIDKolors",
        "IPAAdapterFaceIDBatch",
        "IPAdapterTiled",
        "IPAdapterTiledBatch",
        "IPAdapterEmbeds",
        "IPAdapterEmbedsBatch",
        "IPAdapterStyleComposition",
        "IPAdapterStyleCompositionBatch",
        "IPAdapterMS",
        "IPAdapterClipVisionEnhancer",
        "IPAdapterClipVisionEnhancerBatch",
        "IPAdapterFromParams",
        "IPAdapterPreciseStyleTransfer",
        "IPAdapterPreciseStyleTransferBatch",
        "IPAdapterPreciseComposition",
        "IPAdapterPreciseCompositionBatch",
        "IPAdapterUnifiedLoader",
        "IPAdapterUnifiedLoaderFaceID",
        "IPAdapterModelLoader",
        "IPAdapterInsightFaceLoader",
        "IPAdapterUnifiedLoaderCommunity",
        "IPAdapterEncoder",
        "IPAdapterCombineEmbeds",
        "IPAdapterNoise",
        "PrepImageForClipVision",
        "IPAdapterSaveEmbeds",
        "IPAdapterLoadEmbeds",
        "IPAdapterWeights",
        "IPAdapterCombineWeights",
        "IPAdapterWeightsFromStrategy",
        "IPAdapterPromptScheduleFromWeightsStrategy",
        "IPAdapterRegionalConditioning",
        "IPAdapterCombineParams",
    ),
    "comfyui_controlnet_aux": (
        "ImageLuminanceDetector",
        "ImageIntensityDetector",
        "DiffusionEdge_Preprocessor",
        "TEEDPreprocessor",
        "SavePoseKpsAsJsonFile",
        "FacialPartColoringFromPoseKps",
        "UpperBodyTrackingFromPoseKps",
        "RenderPeopleKps",
        "RenderAnimalKps",
        "DepthAnythingV2Preprocessor",
        "MediaPipe-FaceMeshPreprocessor",
        "MiDaS-NormalMapPreprocessor",
        "MiDaS-DepthMapPreprocessor",
        "Metric3D-DepthMapPreprocessor",
        "Metric3D-NormalMapPreprocessor",
        "MeshGraphormer-DepthMapPreprocessor",
        "MeshGraphormer+ImpactDetector-DepthMapPreprocessor",
        "OpenposePreprocessor",
        "PiDiNetPreprocessor",
        "OneFormer-COCO-SemSegPreprocessor",
        "OneFormer-ADE20K-SemSegPreprocessor",
        "DensePosePreprocessor",
        "BinaryPreprocessor",
        "LineartStandardPreprocessor",
        "BAE-NormalMapPreprocessor",
        "LineArtPreprocessor",
        "DWPreprocessor",
        "AnimalPosePreprocessor",
        "DepthAnythingPreprocessor",
        "Zoe_DepthAnythingPreprocessor",
        "Zoe-DepthMapPreprocessor",
        "ShufflePreprocessor",
        "PyraCannyPreprocessor",
        "TilePreprocessor",
        "TTPlanet_TileGF_Preprocessor",
        "TTPlanet_TileSimple_Preprocessor",
        "CannyEdgePreprocessor",
        "UniFormer-SemSegPreprocessor",
        "SemSegPreprocessor",
        "Unimatch_OptFlowPreprocessor",
        "MaskOptFlow",
        "SAMPreprocessor",
        "AnimeLineArtPreprocessor",
        "InpaintPreprocessor",
        "M-LSDPreprocessor",
        "AnyLineArtPreprocessor_aux",
        "ScribblePreprocessor",
        "Scribble_XDoG_Preprocessor",
        "Scribble_PiDiNet_Preprocessor",
        "ColorPreprocessor",
        "DSINE-NormalMapPreprocessor",
        "HEDPreprocessor",
        "FakeScribblePreprocessor",
        "AnimeFace_SemSegPreprocessor",
        "LeReS-DepthMapPreprocessor",
        "Manga2Anime_LineArt_Preprocessor",
        "AIO_Preprocessor",
        "ControlNetPreprocessorSelector",
        "PixelPerfectResolution",
        "ImageGenResolutionFromImage",
        "ImageGenResolutionFromLatent",
        "HintImageEnchance",
        "ExecuteAllControlNetPreprocessors",
        "ControlNetAuxSimpleAddText",
    ),
}

_PREFIX_PACKS: tuple[tuple[str, str, str], ...] = (
    ("VHS_", "ComfyUI-VideoHelperSuite", "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite"),
    (
        "ADE_",
        "ComfyUI-AnimateDiff-Evolved",
        "https://github.com/Kosinkadink/ComfyUI-AnimateDiff-Evolved",
    ),
    ("IPAdapter", "ComfyUI_IPAdapter_plus", "https://github.com/cubiq/ComfyUI_IPAdapter_plus"),
    (
        "ACN_",
        "ComfyUI-Advanced-ControlNet",
        "https://github.com/Kosinkadink/ComfyUI-Advanced-ControlNet",
    ),
    (
        "UltimateSDUpscale",
        "ComfyUI_UltimateSDUpscale",
        "https://github.com/ssitu/ComfyUI_UltimateSDUpscale",
    ),
)

_CLASS_TO_PACK: dict[str, str] = {}


def pack_for_class(class_type: str) -> tuple[str, str] | None:
    """``(pack name, URL)`` of the custom node pack that likely provides ``class_type``."""
    if not _CLASS_TO_PACK:
        for pack, classes in PACK_CLASSES.items():
            for name in classes:
                _CLASS_TO_PACK[name] = pack
    found = _CLASS_TO_PACK.get(class_type)
    if found is not None:
        return found, KNOWN_PACKS[found]
    for prefix, name, url in _PREFIX_PACKS:
        if class_type.startswith(prefix):
            return name, url
    return None
