"""Reading DICOM: header parsing, the folder scan, stack checks, series selection and pixels."""
