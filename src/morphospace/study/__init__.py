"""The CNN feature study (``morphospace study``).

``finetune``   :class:`~morphospace.study.finetune.FineTuner`, transfer learning of a backbone
               (:mod:`morphospace.nets.backbones`) on galaxy labels, scikit-learn-like;
``finetuned``  what a fitted one does: features, predictions, ``model.pt``;
``targets``    labels as the loss wants them, the seeded train / validation split, the scores;
``datamodule`` the training data: seeded batches of labelled cube rows, augmentation;
``training``   the Lightning side of fine-tuning: the module, a Trainer with early
               stopping and the best epoch's checkpoint;
``features``   the run stage: fine-tune (or freeze) a backbone, write the ``features`` embedding;
``figures``    the study's figures: maps, k-selection curves, cluster galleries.
"""
