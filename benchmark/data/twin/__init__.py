"""The synthetic twin of PartImageNet_OOD: procedural images and part annotations written in the
real release's on-disk format (generate), one body plan per super-category (shapes), and the
renderer of one image and its COCO polygons (render)."""
