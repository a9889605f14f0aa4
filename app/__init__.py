"""MONAI Deploy application: a DICOM cine study in; DICOM SEG, label maps, clinical indices and a picture out.

Run it as ``python app -i DICOM_DIR -o OUT_DIR -m BUNDLE_DIR`` (or with the MONAI Deploy / Holoscan
environment variables ``HOLOSCAN_INPUT_PATH``, ``HOLOSCAN_OUTPUT_PATH`` and ``HOLOSCAN_MODEL_PATH``).
This folder is not part of the ``cardioseg`` wheel: the application imports the library, never the reverse.
"""
