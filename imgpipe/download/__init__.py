"""Where data comes from: built-in, official datasets, URLs, S3, local archives and folders.

Kept empty on purpose: the download stage imports :mod:`imgpipe.download.acquire`, the labels
stage only :mod:`imgpipe.download.fetch`, so editing one source kind never reruns the other stage.
"""
