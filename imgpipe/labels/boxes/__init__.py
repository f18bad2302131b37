"""Object-detection labels (``labels.task: detection``): box files of any common tool to one table.

Readers (:mod:`.voc`, :mod:`.coco`, :mod:`.yolo`, :mod:`.labelstudio`) turn a box file into raw
records (:class:`.table.RawBoxes`); :func:`.table.normalise` matches them to images, fills image
sizes, checks classes and gives each box a stable id; :mod:`.detect` tells the format from the
content; :mod:`.stage` is what the labels stage calls.
"""
