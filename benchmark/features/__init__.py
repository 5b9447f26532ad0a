"""Part-aware features: per image a global embedding and one pooled embedding per part slot.

Geometry: every image is resized to the backbone's square input size without cropping (timm's
"squash" mode, crop_pct=1), so cell (y, x) of the (h, w) feature map sees the same fraction of the
original image as of the resized one. A slot's mask is therefore taken straight from the original
image to the feature grid by area interpolation (the fraction of each cell the part covers), and
the part embedding is the coverage-weighted mean of the feature map. A slot is present when it
covers at least PRESENCE_MIN_AREA of the image (measured on the mask's own pixels, so presence is
the same at every stage); absent slots get a zero embedding. Images cross to the device as uint8
and are normalised there (timm's mean/std): 4x fewer bytes.

Part stage (`part_stage`): the slots pool over the last feature map ("last", stride 32 for most
CNNs) or an earlier, finer one (stride 16 or 8, taken with timm's forward_intermediates; see
Backbone.stage_index). The global embedding is always the model's own pooled output, so the slot
embeddings have C_part channels (e.g. resnet10t: 256 at stride 16, 128 at stride 8) while the
global one has D = num_features (512): D_part != D in general. ViTs have one stride (the patch
size) for every block, so their part_stage is always the last map.

Dense local descriptors (`dense=True`): the part-stage map is also stored per image as
(h' * w', C_part) float16 rows, for local-descriptor learners (DN4). Cost: n * h' * w' * C_part * 2
bytes on disk and in memory (docs/parts.md gives measured figures).

Masks:
- "oracle":    the image's annotated parts, united per slot (PartDataset.slot_masks).
- "predicted": a part-segmentation head on the feature map, `part_head(fmap) -> (B, S+1, h, w)`
               logits (background last); its softmax is each slot's estimated coverage of each
               cell (what the head is trained to predict). No annotation is read.
- "none":      no part features (part_embeddings and part_present are None).
Controls that read no annotation of the image itself (same slot machinery, other regions):
- "grid2", "grid3": the n x n cells of the image as n^2 slots (every slot always present).
- "shuffled":  each image pooled with the oracle slot masks of another image of the same set,
               chosen by a seeded random cyclic order (`mask_seed`; never the image itself), so
               the regions have realistic part shapes and areas but say nothing about this image.

Under torch.distributed each rank extracts a contiguous shard of the indices and the shards are
all-gathered, so every rank returns the same FeatureSet as one process would.
"""
