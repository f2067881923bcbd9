"""MeSAM: fine-tuning SAM on a ``samrs build`` output for semantic segmentation.

Modules:

* :mod:`~samrs.mesam.config` - architectures (``vit_b``, ``vit_l``, ``vit_h``, ``tiny``) and
  the depth-scaled inception-mixer schedule;
* :mod:`~samrs.mesam.lora` - LoRA on the encoder's q and v;
* :mod:`~samrs.mesam.model` - the network (:class:`~samrs.mesam.model.MeSAM`) and what is
  trained;
* :mod:`~samrs.mesam.checkpoint` - SAM checkpoints in, run checkpoints in and out;
* :mod:`~samrs.mesam.data` - label space, manifests, datasets and samplers;
* :mod:`~samrs.mesam.losses`, :mod:`~samrs.mesam.metrics` - CE + Dice, confusion matrix;
* :mod:`~samrs.mesam.train` - the training loop (``samrs finetune``, DDP with torchrun);
* :mod:`~samrs.mesam.infer` - label PNGs (``samrs predict``) and evaluation
  (``samrs evaluate-seg``).
"""
