"""A DICOM node: receive series over the network, spool, translate, store and forward them."""
