"""From a DICOM cine study to what a clinic reads: series selection, segmentation with an exported bundle,
label clean-up, clinical indices, and DICOM SEG / NIfTI / report / picture outputs.

Floor 5 (beside inference and export). The MONAI Deploy application in ``app/`` wires these steps as
operators and ``cardioseg infer`` runs them as one function (:mod:`cardioseg.clinical.pipeline`); nothing
here imports ``app`` or ``monai.deploy``.
"""
