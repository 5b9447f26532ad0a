"""Models: any timm backbone as a feature extractor (weights from one of four sources), the part
segmentation head on its feature maps, devices and precisions, and the content hashes of the
tensors a checkpoint or cache file holds."""
