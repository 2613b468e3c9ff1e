"""Data: the VOC data set and its augmentation, mask formats, synthetic oranges, converters,
and the labelme / COCO drafts written from predicted masks (``drafts``).

``preprocess`` is the one place photos are read and letterboxed: training, evaluation, INT8
calibration and inference all feed the network through it.

May import: ``utils.cli``, ``utils.metrics``. Nothing else of the project.
"""
