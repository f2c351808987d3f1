"""DICOM folders: scanning, series selection, volumes in and derived series out."""
