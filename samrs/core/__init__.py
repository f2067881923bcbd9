"""Core types every stage shares: records (images, objects, errors), class tables, geometry,
mask crops, COCO RLE and image reading."""
