"""Writers and readers of build outputs: semantic PNGs, Parquet manifests, COCO, exports."""
