"""Data: the VOC data set and its augmentation, mask formats, synthetic oranges, converters.

May import: ``utils.preprocess``, ``utils.cli``, ``utils.metrics``. Nothing else of the project.
"""
