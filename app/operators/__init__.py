"""The app's operators, one job each: load the study, select the short-axis cine, read it with every phase,
segment it in ONNX Runtime, clean the labels, compute ED/ES and the indices, write the outputs."""

from .cardiac_indices import CardiacIndicesOperator
from .cine_volume import CineVolumeOperator
from .onnx_inference import OnnxInferenceOperator
from .postprocess import PostprocessOperator
from .series_selector import SeriesSelectorOperator
from .stage import RunState, StageOperator
from .study_loader import StudyLoaderOperator
from .study_writer import StudyWriterOperator

__all__ = [
    "CardiacIndicesOperator",
    "CineVolumeOperator",
    "OnnxInferenceOperator",
    "PostprocessOperator",
    "RunState",
    "SeriesSelectorOperator",
    "StageOperator",
    "StudyLoaderOperator",
    "StudyWriterOperator",
]
