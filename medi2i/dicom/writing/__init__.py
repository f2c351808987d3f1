"""Writing DICOM: derived series from a method's output, its volume writer, de-identification."""
