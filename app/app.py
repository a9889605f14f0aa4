"""The application graph: seven small operators, each with one job, wired in ``compose()``.

::

    study_loader --scan--> series_selector --selection--> cine_volume --series--> onnx_inference
        --raw_labels--> postprocess --labels--> cardiac_indices --indices--> study_writer

with ``selection``, ``series`` and ``labels`` also fed to the writer and ``series`` to the indices. The
loader runs once (``CountCondition``); every other operator runs when its inputs have arrived. The model
is loaded and checked before the graph is built (see ``app.cli``) and handed to the operators that use it.
"""

from __future__ import annotations

from pathlib import Path

from holoscan.conditions import CountCondition
from monai.deploy.core import AppContext, Application

from cardioseg.clinical.model import BundleModel

from .operators import (
    CardiacIndicesOperator,
    CineVolumeOperator,
    OnnxInferenceOperator,
    PostprocessOperator,
    RunState,
    SeriesSelectorOperator,
    StudyLoaderOperator,
    StudyWriterOperator,
)


class CardiacCineSegApp(Application):
    """Short-axis cine MRI segmentation: DICOM study in; DICOM SEG, NIfTI labels, indices, report, picture out."""

    name = "cardioseg-cine"
    description = "Cardiac short-axis cine MRI segmentation (RV, LV myocardium, LV cavity) with clinical indices"
    version = "0.1.0"

    def __init__(
        self, *args, app_context: AppContext, model: BundleModel, run_state: RunState, overwrite: bool = False, **kwargs
    ):
        self.app_context = app_context
        self.overwrite = overwrite
        self.model = model
        self.run_state = run_state
        super().__init__(*args, **kwargs)

    def compose(self) -> None:
        context, state = self.app_context, self.run_state
        loader = StudyLoaderOperator(
            self, CountCondition(self, 1), input_folder=Path(context.input_path), run_state=state, name="study_loader"
        )
        selector = SeriesSelectorOperator(self, run_state=state, name="series_selector")
        cine = CineVolumeOperator(self, run_state=state, name="cine_volume")
        inference = OnnxInferenceOperator(self, model=self.model, run_state=state, name="onnx_inference")
        postprocess = PostprocessOperator(self, run_state=state, name="postprocess")
        indices = CardiacIndicesOperator(self, run_state=state, name="cardiac_indices")
        writer = StudyWriterOperator(
            self,
            output_folder=Path(context.output_path),
            model=self.model,
            overwrite=self.overwrite,
            run_state=state,
            name="study_writer",
        )

        self.add_flow(loader, selector, {("scan", "scan")})
        self.add_flow(selector, cine, {("selection", "selection")})
        self.add_flow(cine, inference, {("series", "series")})
        self.add_flow(inference, postprocess, {("raw_labels", "raw_labels")})
        self.add_flow(cine, indices, {("series", "series")})
        self.add_flow(postprocess, indices, {("labels", "labels")})
        self.add_flow(selector, writer, {("selection", "selection")})
        self.add_flow(cine, writer, {("series", "series")})
        self.add_flow(postprocess, writer, {("labels", "labels")})
        self.add_flow(indices, writer, {("indices", "indices")})
