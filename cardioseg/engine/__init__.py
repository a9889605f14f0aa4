"""What the fine-tuning (``training``) and pretraining (``ssl``) engines both use, one floor below them.

Batched augmentation on the training device, seeded epoch orders, the per-epoch JSON log, resumable
``last.pt`` checkpoints and progress bars. Both engines import from here; neither imports the other.
"""
