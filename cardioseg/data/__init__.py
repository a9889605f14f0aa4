"""One data layer: readers for raw ACDC, SSL4MIS h5, ImageFolder and DICOM cine, plus a phantom cohort."""
